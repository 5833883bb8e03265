"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

_KEY_VARIABLES = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key or NON_* setting from the developer's shell or a ``.env`` file may change a test."""
    import os

    for name in list(os.environ):
        if name in _KEY_VARIABLES or name.startswith("NON_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
