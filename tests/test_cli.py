"""The `nons` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nons.cli import main


def test_demo_prints_the_answer_the_trace_tree_and_the_cost(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "nons.cli", "demo", "What is a compound AI system?"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "160", "HOME": str(tmp_path)},
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "Answer:" in out
    assert "invoke_workflow best-of-5" in out and "chat gpt-4o-mini" in out and "simulated" in out
    assert out.count("nons.node generate") == 5
    assert "Cost by call" in out and "total" in out and "$0.0000" in out


def test_operators_lists_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["operators"]) == 0
    out = capsys.readouterr().out
    for name in ("generate", "classify", "majority", "select_by_id"):
        assert name in out


def test_dashboards_writes_the_four_dashboards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboards", "--output", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.glob("*.json"))
    assert written == ["nons-cost.json", "nons-latency.json", "nons-overview.json", "nons-reliability.json"]


def test_unknown_command_exits_with_usage() -> None:
    with pytest.raises(SystemExit) as raised:
        main(["fly"])
    assert raised.value.code == 2
