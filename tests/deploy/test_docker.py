"""The Dockerfile: linted with hadolint, checked stage by stage, and its runtime commands executed.

No Docker engine runs here, so the image is not built. What can run does: the build stage's install (the
``serve`` extra, without the development tools, into a virtual environment of its own), the image's ENTRYPOINT
and CMD with its ENV, the HEALTHCHECK command against that server, and the STOPSIGNAL.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# The first run installs the image's dependencies into a cached venv (minutes on a slow index).
pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
TOKEN = "image-test-token-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _instructions() -> list[dict[str, Any]]:
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(DOCKERFILE))
    return [i for i in parser.structure if i["instruction"] != "COMMENT"]


def _stages() -> dict[str, list[dict[str, Any]]]:
    stages: dict[str, list[dict[str, Any]]] = {}
    current = ""
    for instruction in _instructions():
        if instruction["instruction"] == "FROM":
            current = instruction["value"].split(" AS ")[-1].strip()
            stages[current] = []
        elif current:
            stages[current].append(instruction)
    return stages


def _final(name: str) -> list[str]:
    return [i["value"] for i in _stages()["runtime"] if i["instruction"] == name]


def _env() -> dict[str, str]:
    from dockerfile_parse import DockerfileParser

    envs: dict[str, str] = DockerfileParser(path=str(DOCKERFILE)).envs  # the last stage's
    return envs


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    completed = subprocess.run(
        [str(hadolint), "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0 and json.loads(completed.stdout or "[]") == [], completed.stdout


def test_two_stages_on_one_pinned_slim_base() -> None:
    from dockerfile_parse import DockerfileParser

    images = DockerfileParser(path=str(DOCKERFILE)).parent_images
    assert len(images) == 2 and len(set(images)) == 1, "the venv is built on the image it runs on"
    repository, _, tag = images[0].partition(":")
    assert repository == "python" and "slim" in tag and tag.startswith("3.11")
    assert list(_stages()) == ["build", "runtime"]


def test_the_final_stage_has_no_build_tools_no_pip_and_a_non_root_user() -> None:
    runs = " ".join(_final("RUN"))
    for tool in ("apt-get", "gcc", "build-essential", "pip install"):
        assert tool not in runs
    build_runs = " ".join(i["value"] for i in _stages()["build"] if i["instruction"] == "RUN")
    assert "pip uninstall --yes pip setuptools" in build_runs, "the copied environment carries no installer"
    copies = _final("COPY")
    assert "--from=build /opt/nons /opt/nons" in copies and "deploy/networks.yaml /etc/nons/networks.yaml" in copies
    assert _final("USER") == ["10001:10001"]
    assert _final("EXPOSE") == ["8000"]
    assert _final("STOPSIGNAL") == ["SIGTERM"]


def test_the_dockerignore_lets_in_exactly_what_the_dockerfile_copies() -> None:
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    copied = set()
    for stage in _stages().values():
        for instruction in stage:
            if instruction["instruction"] == "COPY" and "--from" not in instruction["value"]:
                copied.update(instruction["value"].split()[:-1])
    assert copied == allowed
    assert all((ROOT / path).exists() for path in copied)


def _healthcheck() -> list[str]:
    (value,) = _final("HEALTHCHECK")
    command: list[str] = json.loads(value[value.index("CMD") + 3 :].strip())
    assert "/healthz" in command[-1]
    return command


# --- the runtime commands, executed -------------------------------------------------------------------------


def _pip(venv: Path, *args: str) -> None:
    command = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr[-3000:]


@pytest.fixture(scope="module")
def image_env() -> Iterator[Path]:
    """The build stage's install, outside Docker: a venv with NoN and its `serve` extra only (no dev tools).

    Installing the dependencies takes minutes, so the venv is kept in ~/.cache/nons, keyed by pyproject.toml
    and the Python version, and only NoN itself is reinstalled from this tree on later runs. (The image also
    removes pip from it; the stage test above checks that the Dockerfile does.)
    """
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + sys.version.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nons"
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / f"image-env-{key}"
    with (cache / f"image-env-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session may be building it
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
            _pip(venv, "install", f"{ROOT}[serve]")
            (venv / ".complete").touch()
        else:
            _pip(venv, "install", "--no-deps", "--force-reinstall", str(ROOT))
        yield venv


@pytest.fixture
def container(image_env: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """ENTRYPOINT + CMD with the image's ENV (and a token and a free port), as the container would run them."""
    (entrypoint,) = _final("ENTRYPOINT")
    (cmd,) = _final("CMD")
    command = json.loads(entrypoint) + json.loads(cmd)
    # The image's files: the spec it bakes in, at the path CMD names.
    spec = tmp_path / "etc-nons" / "networks.yaml"
    spec.parent.mkdir()
    spec.write_bytes((ROOT / "deploy" / "networks.yaml").read_bytes())
    command = [spec.as_posix() if part == "/etc/nons/networks.yaml" else part for part in command]
    port = _free_port()
    env = {k: v.replace("$PATH", os.environ["PATH"]).replace("/opt/nons", str(image_env)) for k, v in _env().items()}
    env.update({"NON_SERVE_PORT": str(port), "NON_SERVE_HOST": "127.0.0.1", "NON_SERVE_TOKENS": f"me:{TOKEN}",
                "HOME": str(tmp_path), "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"})
    log = (tmp_path / "container.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield {"process": process, "env": env, "port": port, "token": TOKEN, "log": tmp_path / "container.log"}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        log.close()


def test_the_image_commands_serve_healthcheck_and_stop(container: dict[str, Any]) -> None:
    process, port = container["process"], container["port"]
    assert process.poll() is None, Path(container["log"]).read_text()
    answer = httpx.post(
        f"http://127.0.0.1:{port}/v1/networks/best-of-5/run", json={"input": "Is the image complete?"},
        headers={"Authorization": f"Bearer {container['token']}"}, timeout=30,
    )
    assert answer.status_code == 200 and answer.json()["llm_calls"] == 5
    healthcheck = _healthcheck()
    completed = subprocess.run(healthcheck, env=container["env"], capture_output=True, timeout=30, check=False)
    assert completed.returncode == 0, f"{shlex.join(healthcheck)}: {completed.stderr!r}"
    process.send_signal(signal.Signals[_final("STOPSIGNAL")[0]])
    assert process.wait(timeout=35) == 0
    unhealthy = subprocess.run(healthcheck, env=container["env"], capture_output=True, timeout=30, check=False)
    assert unhealthy.returncode != 0, "the health check fails once the server is gone"


def test_the_image_can_share_limits_in_redis_as_replicas_do(image_env: Path) -> None:
    # Its `serve` extra left redis out: NON_REDIS_URL, which the guide's replicas set, ended `nons serve` with a
    # traceback (No module named 'redis').
    code = "from nons.base.redis_client import RedisLink; print(RedisLink('redis://127.0.0.1:6390/0').url)"
    completed = subprocess.run(
        [str(image_env / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.stdout.strip() == "redis://127.0.0.1:6390/0", completed.stderr[-2000:]
