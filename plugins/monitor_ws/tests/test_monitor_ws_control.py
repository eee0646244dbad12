"""`sigil monitor status` / `stop`, stale pid files, and Sigil's own terminal view."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent))
from monitor_ws_helpers import free_port
from sigil_monitor_ws.view import SigilView, clock

from sigil_core.testing import SigilCLI


def _cli(tmp_path: Path, port: int) -> SigilCLI:
    return SigilCLI(tmp_path, env={"SIGIL_MONITOR_PORT": str(port)})


def test_status_and_stop_find_and_stop_the_spawned_server(tmp_path):
    port = free_port()
    cli = _cli(tmp_path, port)
    pid_file = cli.home / f"monitor-{port}.pid"
    # The command line `orchestrate --monitor` spawns (transport._spawn), detached.
    server = subprocess.Popen(
        [sys.executable, "-m", "sigil_monitor_ws", "serve", "--port", str(port), "--pid-file",
         str(pid_file), "--no-follow"], cwd=cli.cwd, env=cli.env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120  # a generous wait for the server to be up
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        status = cli("monitor", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"pid {server.pid}" in status.stdout
        stopped = cli("monitor", "stop")
        assert stopped.returncode == 0 and f"pid {server.pid}" in stopped.stdout
        assert server.wait(10) is not None
        assert not pid_file.exists()
        after = cli("monitor", "status")
        assert after.returncode == 1 and "No monitor server" in after.stdout
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


def test_a_pid_file_left_by_a_killed_server_is_removed(tmp_path):
    port = free_port()
    cli = _cli(tmp_path, port)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    pid_file = cli.home / f"monitor-{port}.pid"
    pid_file.write_text(str(dead.pid))
    status = cli("monitor", "status")
    assert status.returncode == 1
    assert "stale pid file" in status.stdout and not pid_file.exists()
    # A pid that lives but is not a monitor (here: this test's own process) is stale too.
    pid_file.write_text(str(os.getpid()))
    stop = cli("monitor", "stop")
    assert stop.returncode == 0 and "stale pid file" in stop.stdout and not pid_file.exists()


def test_the_view_shows_whole_times_the_real_budget_and_sigils_name():
    assert clock("2026-12-02T16:34:27.123Z") == "16:34:27"
    view = SigilView(session_id=None, component_filter=None, level_filter="info")
    view._process_log_entry({
        "timestamp": "2026-12-02T16:34:27.123Z", "level": "info", "component": "router",
        "operation": "route_request", "message": "Completed route_request",
        "budget_snapshot": {"total_budget": 50_000, "used": 1_000, "remaining": 49_000}})
    console = Console(record=True, width=140, height=30)
    console.print(view._render_dashboard())
    text = console.export_text()
    assert "16:34:27" in text and "Sigil Monitor" in text and "Sigil v2" not in text
    assert "1,000 / 50,000 (2.0%)" in text
