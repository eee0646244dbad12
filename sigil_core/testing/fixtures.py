"""pytest fixtures for plugin tests, loaded by pytest through sigil-core's ``pytest11`` entry
point (nothing to import): ``sigil_cli``, ``sigil_home`` and ``sigil_replay``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..replay import sigil_replay  # noqa: F401 - the cassette fixture, loaded with these
from .harness import SigilCLI


@pytest.fixture
def sigil_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary SIGIL_HOME and working folder for in-process tests (``make_run``,
    ``Orchestrator``): the caller's SIGIL_* and API-key variables are removed."""
    import os

    for var in list(os.environ):
        if var.startswith(SigilCLI.DROPPED):
            monkeypatch.delenv(var)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SIGIL_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def sigil_cli(tmp_path: Path) -> SigilCLI:
    """The real ``sigil`` command in a temporary home (see :class:`SigilCLI`)."""
    return SigilCLI(tmp_path / "sigil")
