"""``nons check FILE``: validate a spec and print its networks as trees."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from twin_networks import SPEC

from nons.cli import main


def test_a_valid_spec_prints_each_network_as_a_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "nets.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "triage" in out and "best-of-3" in out
    assert "5 × generate @ mock/gpt-4o-mini" in out
    assert "skip_and_continue" in out and "categories=" in out
    assert "2 networks, valid" in out


def test_an_invalid_spec_lists_file_line_and_field_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "nets.yaml"
    spec.write_text("networks:\n  a:\n    layers:\n      - 3 x generat\n      - operator: classify\n", encoding="utf-8")
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert f"{spec}:4:9: networks.a.layers[0]: in the shorthand, operator: unknown operator 'generat'" in err
    assert f"{spec}:5:9: networks.a.layers[1]" in err and "needs parameter(s) categories" in err


def test_import_loads_modules_that_register_operators(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_operators.py").write_text(
        textwrap.dedent(
            """\
            from nons import operator

            @operator(description="Shout the input.", uses_llm=False, replace=True)
            async def shout(ctx, input: str) -> str:
                return input.upper()
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = tmp_path / "nets.yaml"
    spec.write_text("networks:\n  loud: {layers: [shout]}\n", encoding="utf-8")
    assert main(["check", str(spec), "--import", "my_operators"]) == 0
    assert "shout" in capsys.readouterr().out


@pytest.mark.parametrize(("policy", "unused"), [("retry_with_backoff", True), ("fallback_model", False)])
def test_fallbacks_a_layers_policy_never_uses_are_said_to_be_unused(
    policy: str, unused: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # They were drawn as a failover chain under retry_with_backoff, which never falls back (the README's own
    # example did this).
    monkeypatch.setenv("COLUMNS", "200")
    spec = tmp_path / "nets.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
            version: 1
            defaults:
              layer: {{error_policy: {policy}, max_retries: 1}}
            networks:
              n:
                layers:
                  - operator: generate
                    model: mock/gpt-4o-mini
                    fallbacks: [mock/gpt-4o]
            """),
        encoding="utf-8",
    )
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert ("fallbacks unused: the layer's policy is retry_with_backoff" in out) is unused


def test_a_network_without_a_layer_policy_is_judged_under_non_error_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the engine runs it: judged under LayerConfig's default, its used fallbacks were said to be unused.
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NON_ERROR_POLICY", "fallback_model")
    spec = tmp_path / "nets.yaml"
    spec.write_text(
        "version: 1\nnetworks:\n  n:\n    layers:\n      - {operator: generate, model: mock/gpt-4o-mini, "
        "fallbacks: [mock/gpt-4o]}\n",
        encoding="utf-8",
    )
    assert main(["check", str(spec)]) == 0
    assert "fallbacks unused" not in capsys.readouterr().out
