"""Starting ``nons serve``: it refuses to run without tokens unless told so, loudly, and names bad settings."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from service_process import ALICE, SPEC, clean_env, start_service

from nons.serve.settings import OPTIONS

pytestmark = pytest.mark.timeout(120)


def _serve(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, spec: str = SPEC, port: int = 0
) -> subprocess.CompletedProcess[str]:
    spec_path = tmp_path / "networks.yaml"
    spec_path.write_text(spec, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "nons.cli", "serve", str(spec_path), "--port", str(port), *args],
        capture_output=True, text=True, timeout=60, env=clean_env(env), cwd=tmp_path, check=False,
    )


def test_without_tokens_it_refuses_to_start(tmp_path: Path) -> None:
    completed = _serve(tmp_path)
    assert completed.returncode == 2
    assert "refusing to start without bearer tokens" in completed.stderr and "--insecure-dev" in completed.stderr


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        ({"NON_SERVE_TOKENS": "alice:short"}, (), "at least 16 are needed"),
        ({"NON_SERVE_TOKENS": f"alice:{ALICE},alice:{ALICE}x"}, (), "caller 'alice' has two tokens"),
        ({"NON_SERVE_TOKENS": f"alice:{ALICE}"}, ("--rate-limit", "lots"), "not in the limits notation"),
        # Several limits were read as the first alone (the cap after it never applied); a limit of none failed
        # every request as if the counts' storage were down (503 limits_unavailable).
        ({"NON_SERVE_TOKENS": f"alice:{ALICE}"}, ("--rate-limit", "100/second;3/minute"), "states 2 limits; give one"),
        ({"NON_SERVE_TOKENS": f"alice:{ALICE}", "NON_SERVE_RATE_LIMIT": "0/minute"}, (), "allows no request"),
        # A setting was named with an option that does not exist (--grace-period-s for --grace-period), or with
        # one when it has none.
        ({"NON_SERVE_TOKENS": f"alice:{ALICE}"}, ("--drain-delay", "-1"),
         "NON_SERVE_DRAIN_DELAY_S / --drain-delay: Input should be greater than or equal to 0"),
        ({"NON_SERVE_TOKENS": f"alice:{ALICE}", "NON_SERVE_MAX_BODY_BYTES": "0"}, (),
         "NON_SERVE_MAX_BODY_BYTES: Input should be greater than 0"),
        ({"NON_SERVE_TOKENS": f"alice:{ALICE}"}, ("--tokens-file", "/nonexistent/tokens"), "cannot be read"),
        # A comment after a token made it part of the token, which no request could send.
        ({"NON_SERVE_TOKENS": f"bob:{ALICE}x  # ops team"}, (), "line 1: an entry contains a space"),
        # Nor does a bare token whose comment holds a ':' (its start was taken for a caller name and quoted).
        ({"NON_SERVE_TOKENS": f"{ALICE}x # ops: team-a"}, (), "line 1: an entry contains a space"),
        ({"NON_SERVE_TOKENS": f"{ALICE}/+=:{ALICE}x"}, (), "a token that holds a ':' needs its caller's name"),
        # inf passed every bound and failed later (at shutdown, the first request, the last flush) as an
        # OverflowError; a bad setting is named as its variable and its option.
        ({"NON_SERVE_TOKENS": f"alice:{ALICE}", "NON_SERVE_GRACE_PERIOD_S": "inf"}, (),
         "NON_SERVE_GRACE_PERIOD_S / --grace-period: Input should be a finite number"),
        ({"NON_SERVE_TOKENS": f"alice:{ALICE}"}, ("--spend-limit-usd-per-day", "inf"),
         "NON_SERVE_SPEND_LIMIT_USD_PER_DAY / --spend-limit-usd-per-day: Input should be a finite number"),
        ({"NON_SERVE_TOKENS": f"alice:{ALICE}", "NON_SERVE_TELEMETRY_FLUSH_S": "nan"}, (),
         "NON_SERVE_TELEMETRY_FLUSH_S / --telemetry-flush: Input should be a finite number"),
        # The core settings, and the Redis URL: before, a traceback from the server's start-up (exit status 3).
        ({"NON_SERVE_TOKENS": f"alice:{ALICE}", "NON_REDIS_TIMEOUT": "0"}, (),
         "nons: invalid NoN settings: NON_REDIS_TIMEOUT='0' (redis_timeout): Input should be greater than 0"),
        ({"NON_SERVE_TOKENS": f"alice:{ALICE}", "NON_REDIS_URL": "htp://:hunter2-secret@127.0.0.1:6379/0"}, (),
         "nons serve: NON_REDIS_URL: the Redis URL must start with redis://"),
        ({"NON_SERVE_TOKENS": f"alice:{ALICE}", "NON_REDIS_URL": "redis://:hunter2-secret@127.0.0.1:notaport/0"},
         (), "nons serve: NON_REDIS_URL: the Redis URL 'redis://:***@127.0.0.1:notaport/0' is not valid"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, env: dict[str, str], args: tuple[str, ...], says: str) -> None:
    completed = _serve(tmp_path, *args, env=env)
    assert completed.returncode == 2 and says in completed.stderr
    assert ALICE not in completed.stderr, "a token never appears in a message"
    assert "hunter2-secret" not in completed.stderr and "Traceback" not in completed.stderr


def test_a_bad_spec_is_reported_with_file_and_line(tmp_path: Path) -> None:
    completed = _serve(tmp_path, env={"NON_SERVE_TOKENS": f"alice:{ALICE}"}, spec="networks:\n  a: {layers: [gen]}\n")
    assert completed.returncode == 1
    assert "networks.yaml:2:" in completed.stderr and "unknown operator" in completed.stderr


def test_a_port_in_use_is_said_and_the_run_fails_with_status_1(tmp_path: Path) -> None:
    # Before, uvicorn's own status 3: not one the CLI documents (0 done, 1 failed, 2 usage).
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        completed = _serve(tmp_path, env={"NON_SERVE_TOKENS": f"alice:{ALICE}"}, port=taken.getsockname()[1])
    assert completed.returncode == 1
    assert "address already in use" in completed.stderr.lower() and ALICE not in completed.stderr


def test_insecure_dev_serves_without_tokens_and_says_so_loudly(tmp_path: Path) -> None:
    with start_service(tmp_path, args=["--insecure-dev"]) as service:
        assert service.run("best-of-3", "hi", token=None).status_code == 200
        assert service.get("/v1/networks").status_code == 200
        log = service.log()
    assert "WITHOUT AUTHENTICATION" in log and "local development only" in log


def test_tokens_from_the_environment_are_enough(tmp_path: Path) -> None:
    with start_service(tmp_path, env={"NON_SERVE_TOKENS": f"alice:{ALICE}"}) as service:
        assert service.get("/v1/networks", token=ALICE).status_code == 200
        assert service.get("/v1/networks").status_code == 401
        assert "WITHOUT AUTHENTICATION" not in service.log()


def test_every_option_an_error_names_is_one_nons_serve_takes() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "nons.cli", "serve", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert all(option in completed.stdout for option in OPTIONS.values())
