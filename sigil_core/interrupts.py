"""Ctrl-C and SIGTERM for commands that run a session: stop cleanly and leave a true record.

Python's default Ctrl-C raises KeyboardInterrupt wherever the interpreter happens to be (an
import, a sink's write, asyncio's own machinery), so nothing after it can be trusted to run.
Instead, :func:`install` replaces the handlers for SIGINT and SIGTERM as the command starts,
before anything heavy is imported. A signal is only *recorded*; a run that is attached
(:func:`attach`) is told at once, through its event loop, and stops at the next safe point:
no new phase, operation or call starts, calls already sent get a grace period, and the session
is written with status ``interrupted``. A signal that arrives before the run exists is handed to
the run as soon as it attaches. A second signal while the run is stopping cuts the grace period
short; a third exits at once (the user insists).

The exit code is 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as shells report.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_state: dict[str, Any] = {"installed": False, "received": [], "target": None}


def install() -> None:
    """Record SIGINT/SIGTERM instead of raising; idempotent."""
    if _state["installed"]:
        return
    _state["installed"] = True
    for sig in SIGNALS:
        # A signal ignored by whoever started us (nohup, `cmd &` in a script) stays ignored,
        # as Python itself does for SIGINT.
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _on_signal)


#: Commands that run a session (``sessions resume`` is two words).
RUN_COMMANDS = frozenset({"orchestrate", "replay", "sessions resume"})


def run_command(argv: list[str]) -> str | None:
    """The sigil command a process's original command line runs, if it runs one of
    :data:`RUN_COMMANDS`: ``sigil CMD ...`` or ``python [opts] -m sigil_core CMD ...``."""
    rest: list[str] | None = None
    for i, arg in enumerate(argv):
        if arg == "-m" and i + 1 < len(argv):
            rest = argv[i + 2:] if argv[i + 1] == "sigil_core" else None
            break
        if i > 0 and os.path.basename(arg) in ("sigil", "sigil.exe"):
            rest = argv[i + 1:]
            break
    if not rest:
        return None
    for command in (" ".join(rest[:2]), rest[0]):
        if command in RUN_COMMANDS:
            return command
    return None


def install_for_command_line(argv: list[str]) -> None:
    """:func:`install` when ``argv`` runs a session command (see :func:`run_command`)."""
    if run_command(list(argv)) is not None:
        install()


def installed() -> bool:
    return bool(_state["installed"])


def _on_signal(signum: int, frame: Any) -> None:
    received: list[int] = _state["received"]
    received.append(signum)
    if len(received) >= 3:
        os._exit(128 + received[0])
    target = _state["target"]
    if target is not None:
        loop, callback = target
        try:
            # Signal handlers run between two bytecodes of the main thread, which is the loop's
            # thread: call_soon_threadsafe is the safe way in (it also wakes a sleeping loop).
            loop.call_soon_threadsafe(callback, signum, len(received))
        except RuntimeError:  # the loop is closed: the run is over, only the exit code changes
            pass


def attach(loop: Any, callback: Callable[[int, int], None]) -> None:
    """Send signals to ``callback(signum, count)`` on ``loop``; replays any signal received
    before. Does nothing unless :func:`install` was called (library use keeps Python's
    default behaviour)."""
    if not _state["installed"]:
        return
    _state["target"] = (loop, callback)
    for i, signum in enumerate(_state["received"]):
        loop.call_soon(callback, signum, i + 1)


def detach() -> None:
    _state["target"] = None


def first_signal() -> int | None:
    """The first signal received since :func:`install`, if any."""
    received = _state["received"]
    return received[0] if received else None


def exit_code(default: int) -> int:
    """128 + the first signal received, else ``default``."""
    signum = first_signal()
    return default if signum is None else 128 + signum
