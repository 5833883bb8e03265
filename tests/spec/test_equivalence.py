"""A spec file and the Python API build the same network: the same structure, and the same results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from twin_networks import build_from_spec, build_with_api

from nons.spec import describe_network

HERE = Path(__file__).parent


def test_both_ways_build_the_same_structure() -> None:
    from_spec, with_api = build_from_spec(), build_with_api()
    assert list(from_spec) == list(with_api)
    for name in from_spec:
        assert describe_network(from_spec[name]) == describe_network(with_api[name]), name


def test_the_structure_covers_what_the_spec_says() -> None:
    triage = describe_network(build_from_spec()["triage"])
    assert [layer["width"] for layer in triage["layers"]] == [5, 1, 2]
    classify = triage["layers"][1]["nodes"][0]
    assert classify["model"]["fallbacks"] == [{"provider": "mock", "model_name": "gpt-4o"}]
    assert classify["fallbacks"] == [{"provider": "mock", "model_name": "gpt-4o-mini"}]
    assert classify["priority"] == 2 and classify["context"] == "Classify the answers."
    assert triage["layers"][2]["config"]["error_policy"] == "skip_and_continue"
    assert triage["layer_config"]["error_policy"] == "retry_with_backoff"


def _run(side: str) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, str(HERE / "twin_networks.py"), side],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, object] = json.loads(completed.stdout)
    return result


def test_both_ways_give_the_same_results_for_the_same_seeds() -> None:
    from_spec, with_api = _run("spec"), _run("api")
    assert from_spec == with_api
    triage = from_spec["triage"]
    assert isinstance(triage, dict) and len(triage["calls"]) == 8 and triage["cost_usd"] > 0
