"""pytest fixtures for plugin tests, loaded by pytest through sigil-core's ``pytest11`` entry
point (nothing to import): ``sigil_cli``, ``sigil_home`` and ``sigil_replay``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ..replay import Cassette, ReplayOutcome, replay
from .harness import SigilCLI


def pytest_configure(config: pytest.Config) -> None:
    """Tests send Ctrl-C (SIGINT) to the ``sigil`` processes they start. A pytest started in
    the background by a non-interactive shell (``cmd &``) has SIGINT ignored, which its
    children would inherit, and Sigil, as any program should, leaves an ignored SIGINT
    ignored (``nohup``): restored here so those tests test Sigil, not the shell."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# A `sigil orchestrate` that a test starts itself (subprocess, inheriting this environment)
# leaves no resident worker behind either (worker.auto_start); a test that wants one says so.
os.environ.setdefault("SIGIL_WORKER_AUTO_START", "0")


@pytest.fixture
def sigil_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary SIGIL_HOME and working folder for in-process tests (``make_run``,
    ``Orchestrator``): the caller's SIGIL_* and API-key variables are removed."""
    for var in list(os.environ):
        if var.startswith(SigilCLI.DROPPED):
            monkeypatch.delenv(var)
    monkeypatch.setenv("SIGIL_WORKER_AUTO_START", "0")  # a `sigil` it starts leaves no worker
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SIGIL_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def sigil_cli(tmp_path: Path) -> SigilCLI:
    """The real ``sigil`` command in a temporary home (see :class:`SigilCLI`)."""
    return SigilCLI(tmp_path / "sigil")


@pytest.fixture
def sigil_replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a recorded task against its cassette: ``sigil_replay(path, strict=True)``.

    The run happens in a temporary folder with a fresh SIGIL_HOME, through the installed
    plugins, with the cassette's answers instead of a model. With ``strict`` (the default)
    a request that has no recorded answer fails the test and shows the difference from the
    nearest recorded request. Returns a :class:`~sigil_core.replay.ReplayOutcome`.
    """
    import asyncio

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIGIL_HOME", str(tmp_path / "sigil-home"))

    def run(path: str | Path, *, strict: bool = True) -> ReplayOutcome:
        from ..config import load_config
        from ..plugins import PluginHost

        cassette = Cassette.load(Path(path))
        result = asyncio.run(replay(cassette, load_config(), PluginHost().load(),
                                    strict=strict))
        if strict and result.mismatches:
            pytest.fail("replay of " + str(path) + ": " + result.mismatches[0].describe(),
                        pytrace=False)
        return result

    return run
