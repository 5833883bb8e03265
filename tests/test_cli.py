"""The `nons` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nons.cli import _unknown, main


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


def test_the_dashboards_module_writes_into_its_directory_and_takes_help_as_help(tmp_path: Path) -> None:
    def module(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nons.observability.dashboards", *args],
            capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
        )  # fmt: skip

    # --help was taken for the directory: the dashboards were written into ./--help.
    helped = module("--help")
    assert helped.returncode == 0 and "usage:" in helped.stdout and list(tmp_path.iterdir()) == []
    assert module("out").returncode == 0 and len(list((tmp_path / "out").glob("*.json"))) == 4


def test_unknown_command_exits_with_usage() -> None:
    with pytest.raises(SystemExit) as raised:
        main(["fly"])
    assert raised.value.code == 2


NETWORK_FILE = """
from nons import ModelConfig, ModelProvider, NoN, Node

simulated = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")
network = NoN.from_operators([[Node("generate", simulated)] * 3, Node("generate", simulated)], name="answers")
"""


def run_cli(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nons.cli", "run", *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, input=stdin,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "160", "HOME": str(tmp_path)},
    )


def test_run_runs_the_network_a_python_file_declares_with_a_progress_bar(tmp_path: Path) -> None:
    (tmp_path / "answers.py").write_text(NETWORK_FILE)
    completed = run_cli(tmp_path, "answers.py", "What is the capital of France?")
    assert completed.returncode == 0, completed.stderr
    assert "simulated answer" in completed.stdout
    assert "cost $0.0000" in completed.stdout and "trace " in completed.stdout
    # The progress bar (on stderr) ends with every node done and the pass's cost.
    assert "answers layer 2/2" in completed.stderr and "4/4 nodes" in completed.stderr


def test_run_says_which_calls_its_totals_leave_out(tmp_path: Path) -> None:
    unpriced = NETWORK_FILE.replace('model_name="gpt-4o-mini"', 'model_name="my-local-llm"')
    (tmp_path / "answers.py").write_text(unpriced)
    completed = run_cli(tmp_path, "answers.py", "What is the capital of France?")
    assert completed.returncode == 0, completed.stderr
    assert "cost $0.000000" in completed.stdout
    assert "(calls not in these totals: 4 of unknown price)" in completed.stdout


def test_the_totals_note_names_calls_of_unknown_price_and_of_unknown_usage() -> None:
    assert _unknown(0, 0) == ""
    assert _unknown(2, 1) == " (calls not in these totals: 2 of unknown price, 1 of unknown usage)"


def test_run_reads_the_input_from_stdin_and_picks_a_network_by_name(tmp_path: Path) -> None:
    (tmp_path / "two.py").write_text(NETWORK_FILE + "\nother = NoN.from_operators(['generate'], name='other')\n")
    completed = run_cli(tmp_path, "two.py", "--network", "other", stdin="What is a compound AI system?")
    assert completed.returncode == 0, completed.stderr
    assert "other layer 1/1" in completed.stderr and "1/1 nodes" in completed.stderr


@pytest.mark.parametrize(
    "order", [["--network", "other", "two.py", "Hello"], ["two.py", "--network", "other", "Hello"],
              ["two.py", "Hello", "--network", "other"], ["two.py", "--network", "other", "--", "-Hello"]],
    ids=["option first", "option between", "option last", "option between, input after --"],
)  # fmt: skip
def test_run_takes_the_network_option_anywhere(tmp_path: Path, order: list[str]) -> None:
    # Between the file and the input it was a usage error ("unrecognized arguments: Hello").
    (tmp_path / "two.py").write_text(NETWORK_FILE + "\nother = NoN.from_operators(['generate'], name='other')\n")
    completed = run_cli(tmp_path, *order)
    assert completed.returncode == 0, completed.stderr
    assert "other layer 1/1" in completed.stderr


SPEC_FILE = """
version: 1
defaults:
  model: mock/gpt-4o-mini
networks:
  answers:
    layers:
      - "3 x generate"
      - generate
"""


@pytest.mark.parametrize("name", ["answers.yaml", "answers.json"])
def test_run_runs_a_network_of_a_spec_file(tmp_path: Path, name: str) -> None:
    # A JSON spec, which `nons check` and `nons serve` take, was run as Python ("declares no NoN network").
    text = SPEC_FILE if name.endswith(".yaml") else json.dumps(yaml.safe_load(SPEC_FILE))
    (tmp_path / name).write_text(text)
    completed = run_cli(tmp_path, name, "What is the capital of France?")
    assert completed.returncode == 0, completed.stderr
    assert "simulated answer" in completed.stdout and "cost $0.0000" in completed.stdout
    assert "answers layer 2/2" in completed.stderr and "4/4 nodes" in completed.stderr


def test_run_reports_a_spec_files_problems(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(SPEC_FILE.replace("3 x generate", "3 x no_such_operator"))
    completed = run_cli(tmp_path, "bad.yaml", "hello")
    assert completed.returncode != 0
    assert "bad.yaml" in completed.stderr and "no_such_operator" in completed.stderr


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (None, "no such file"),
        ("x = 1\n", "must declare a NoN network; found none"),
        ("from nons import NoN\na = NoN.from_operators(['generate'])\nb = NoN.from_operators(['generate'])\n",
         "found several (a, b): choose one with --network"),
    ],
)
def test_run_says_what_is_wrong_with_the_file(tmp_path: Path, source: str | None, message: str) -> None:
    if source is not None:
        (tmp_path / "net.py").write_text(source)
    completed = run_cli(tmp_path, "net.py", "hello")
    assert completed.returncode != 0
    assert message in completed.stderr


def _cli(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nons.cli", *args], capture_output=True, text=True, timeout=120, cwd=tmp_path,
        input=stdin, env={"PATH": "/usr/bin:/bin", "COLUMNS": "160", "HOME": str(tmp_path)},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (("run", "answers.yaml", ""), None, "nons run: input must not be empty or whitespace"),
        (("run", "answers.yaml"), "", "nons run: input must not be empty or whitespace"),
        (("run", "failing.yaml", "hi"), None, "nons run: network 'failing'"),
        (("check", "answers.yaml", "--import", "no_such_module_xyz"), None,
         "nons: cannot import 'no_such_module_xyz' (--import): ModuleNotFoundError"),
        (("dashboards", "--output", "answers.yaml"), None, "nons dashboards: [Errno 17] File exists"),
        (("run", ".", "hi"), None, "nons run: .: is a directory"),
        (("run", "five.py", "hi"), None, "nons run: five.py: `network` is of type int, not a NoN network"),
    ],
)
def test_what_the_user_must_fix_is_one_line_not_a_traceback(
    tmp_path: Path, args: tuple[str, ...], stdin: str | None, says: str
) -> None:
    # Each of these printed a traceback of 40 lines and more (NoN's frames, and an unrelated chained error).
    (tmp_path / "answers.yaml").write_text(SPEC_FILE)
    failing = "networks:\n  failing:\n    layers: [{operator: generate, model: {model: mock/gpt-4o-mini, " \
        "extra_params: {mock_failure_rate: 1.0, mock_failure_kind: server_error}}}]\n"
    (tmp_path / "failing.yaml").write_text(failing)
    (tmp_path / "five.py").write_text(NETWORK_FILE.replace("network = ", "other = ") + "network = 5\n")
    completed = _cli(tmp_path, *args, stdin=stdin)
    assert completed.returncode == 1, completed.stderr
    assert says in completed.stderr and "Traceback" not in completed.stderr


def test_modules_beside_the_file_or_in_the_current_directory_can_be_imported(tmp_path: Path) -> None:
    # A console script puts neither on the path: `python net.py` worked where `nons run net.py` did not.
    (tmp_path / "my_ops.py").write_text(
        "from nons import operator\n\n@operator(name='cli_shout', description='Shout.', uses_llm=False, replace=True)\n"
        "async def shout(ctx, input: str) -> str:\n    return input.upper()\n"
    )
    (tmp_path / "net.py").write_text(
        "import my_ops\nfrom nons import NoN\nnetwork = NoN.from_operators(['cli_shout'])\n"
    )
    (tmp_path / "loud.yaml").write_text("networks:\n  loud:\n    layers: [cli_shout]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ran = _cli(elsewhere, "run", str(tmp_path / "net.py"), "hi")
    checked = _cli(tmp_path, "check", "loud.yaml", "--import", "my_ops")
    assert ran.returncode == 0 and "HI" in ran.stdout, ran.stderr
    assert checked.returncode == 0 and "valid" in checked.stdout, checked.stderr


def test_the_demo_refuses_an_empty_question_as_it_does_a_blank_one(tmp_path: Path) -> None:
    # "" was taken as no question: the default one was answered.
    completed = _cli(tmp_path, "demo", "")
    assert completed.returncode == 1 and "must not be empty" in completed.stderr


def test_the_demo_prints_a_question_with_brackets_as_it_was_asked(tmp_path: Path) -> None:
    completed = _cli(tmp_path, "demo", "what is a[/i] [bold]list?")
    assert completed.returncode == 0, completed.stderr
    assert "Question: what is a[/i] [bold]list?" in completed.stdout
