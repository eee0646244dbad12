"""Finding and stopping the monitor server ``orchestrate --monitor`` spawned.

A spawned server writes ``$SIGIL_HOME/monitor-<port>.pid``. The pid file alone proves little:
the server may have been killed (the file stays) and the pid reused by another program. So a
pid counts only while that process still runs ``sigil_monitor_ws``, and a pid file that names
no such process is stale and removed.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


def pid_file(home: Path, port: int) -> Path:
    return Path(home) / f"monitor-{port}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def _is_monitor(pid: int) -> bool:
    """Whether ``pid`` runs a Sigil monitor server (not a reused pid of another program)."""
    if not _alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            return True
        return any(b"sigil_monitor_ws" in a for a in args) and b"serve" in args
    return True  # no /proc (macOS): trust a live pid


@dataclass
class ServerState:
    """What the pid file says and what is true."""

    pid: int | None
    running: bool
    stale_removed: bool = False


def read_state(home: Path, port: int) -> ServerState:
    """The server's state; a stale pid file (dead or foreign pid, garbage) is removed."""
    path = pid_file(home, port)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return ServerState(None, False)
    except OSError:
        return ServerState(None, False)
    pid = int(text) if text.isdigit() else None
    if pid is not None and _is_monitor(pid):
        return ServerState(pid, True)
    try:
        path.unlink()
    except OSError:
        return ServerState(pid, False)
    return ServerState(pid, False, stale_removed=True)


def stop(home: Path, port: int, timeout: float = 5.0) -> ServerState:
    """SIGTERM the spawned server and wait for it to go (SIGKILL after ``timeout``)."""
    state = read_state(home, port)
    if not state.running or state.pid is None:
        return state
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(state.pid):
        os.kill(state.pid, signal.SIGKILL)
    path = pid_file(home, port)
    if path.exists() and path.read_text().strip() == str(state.pid):
        path.unlink()
    return state
