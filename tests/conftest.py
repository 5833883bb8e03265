"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

_KEY_VARIABLES = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY")
#: Standard variables that change what NoN records.
_OTEL_SWITCHES = ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key, NON_* setting or capture switch from the developer's shell, and no ``.env`` file, may change a
    test (each test runs in its own empty directory)."""
    import os

    for name in list(os.environ):
        if name in _KEY_VARIABLES or name in _OTEL_SWITCHES or name.startswith("NON_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
