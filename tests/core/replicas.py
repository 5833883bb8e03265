"""Replica processes that start a piece of work at the same instant: each prints ``ready`` once set up, then
reads one start time (``time.time()``) from stdin, does its work, and prints its result as one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def run_together(script: Path, argvs: list[list[str]], lead_s: float = 0.3) -> list[dict[str, Any]]:
    """Run ``script`` once per argument list, start them together ``lead_s`` after the last is ready, and return
    each one's JSON result (a replica that fails fails the test with its stderr)."""
    processes = [
        subprocess.Popen([sys.executable, str(script), *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
        for argv in argvs
    ]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
    start_at = time.time() + lead_s
    results = []
    for process in processes:
        out, err = process.communicate(f"{start_at!r}\n".encode(), timeout=120)
        assert process.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results
