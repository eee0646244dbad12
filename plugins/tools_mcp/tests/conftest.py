"""Fixtures of the tools_mcp tests (names prefixed ``tools_mcp_``: all plugin test folders are
collected in one pytest run)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from sigil_core.testing import SigilCLI

HERE = Path(__file__).parent
FAKE_SERVER = HERE / "tools_mcp_fake_server.py"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "sigil-tests" if base else Path("/tmp")


@pytest.fixture(scope="session")
def tools_mcp_time_server() -> Path:
    """``mcp-server-time`` from PyPI, in its own virtualenv (it pins its own mcp).

    Made once and kept in a cache folder; skipped only when pip cannot reach the registry.
    """
    root = Path(os.environ.get("SIGIL_MCP_TIME_VENV") or _cache_dir() / "sigil-mcp-time-venv")
    exe = root / "bin" / "mcp-server-time"
    if exe.exists():
        return exe
    root.parent.mkdir(parents=True, exist_ok=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    proc = subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", "mcp-server-time"],
        capture_output=True, text=True, timeout=600, check=False
    )
    if proc.returncode != 0 or not exe.exists():
        text = proc.stderr + proc.stdout
        if any(s in text for s in ("Could not find a version", "NewConnectionError",
                                   "Failed to establish", "No matching distribution",
                                   "Temporary failure in name resolution")):
            pytest.skip(f"pip cannot install mcp-server-time from the registry: {text[-300:]}")
        raise RuntimeError(f"installing mcp-server-time failed:\n{text[-2000:]}")
    return exe


def fake_server(mode: str = "stdio", **settings: object) -> dict[str, object]:
    """An ``mcp_servers`` entry that starts the fake server."""
    return {"command": sys.executable, "args": [str(FAKE_SERVER), mode], **settings}


@pytest.fixture
def tools_mcp_fake() -> object:
    return fake_server


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def pids_running(marker: str) -> list[int]:
    """Processes whose command line contains ``marker`` (to find orphans)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.fixture
def tools_mcp_procs() -> object:
    class Procs:
        alive = staticmethod(pid_alive)
        running = staticmethod(pids_running)

    return Procs


@pytest.fixture
def tools_mcp_cli(tmp_path: Path) -> SigilCLI:
    """The real ``sigil`` in a temporary home (write ``mcp_servers`` with ``write_config``)."""
    return SigilCLI(tmp_path, env={"COLUMNS": "200"})
