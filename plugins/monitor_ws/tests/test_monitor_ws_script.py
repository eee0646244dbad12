"""The spec's monitor.py, unchanged, against the server during a real run (through tmux)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_monitor_ws_run import MonitorEnv, events_so_far, hold_when

PLUGIN = Path(__file__).resolve().parents[1]
SCRIPT = PLUGIN / "sigil_monitor_ws" / "monitor.py"
SPEC = Path("/work/shared/seed/cli-execution-flow.md")


def spec_block() -> str | None:
    for candidate in (SPEC, PLUGIN.parents[1] / "seed" / "cli-execution-flow.md"):
        if candidate.exists():
            text = candidate.read_text()
            start = text.index("```python\n", text.index("### The `monitor.py` Script")) + 10
            return text[start:text.index("\n```\n", start) + 1]
    return None


def test_monitor_py_is_the_spec_script_verbatim():
    block = spec_block()
    if block is None:
        pytest.skip("the spec (cli-execution-flow.md) is not on this machine")
    assert SCRIPT.read_text() == block
    assert (PLUGIN / "monitor.py").resolve() == SCRIPT


def port_8000_free() -> bool:
    with socket.socket() as s:
        # as the server does: connections of an earlier run in TIME_WAIT do not block it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", 8000))
        except OSError:
            return False
    return True


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed "
                    "(apt-get install -y tmux)")
def test_spec_monitor_py_shows_session_operation_and_tokens_during_a_run(tmp_path):
    if not port_8000_free():
        pytest.skip("monitor.py hard-codes port 8000, which is in use on this machine")
    # No timing: the run is held still (SIGSTOP) once its session file shows tokens spent, and
    # the test waits, generously, for monitor.py to show it; then the run goes on and the test
    # waits for the final total. The server follows the session files, so what the run wrote
    # before it was stopped reaches it whatever the run's own connection had sent.
    env = MonitorEnv(tmp_path)
    env.port = 8000
    env.env["SIGIL_MONITOR_PORT"] = "8000"
    sock = f"sigil_monitor_ws_{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", sock]
    jsonl = env.cwd / "outputs" / "sessions" / "sess_mon_tmux.jsonl"

    def pane() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "mon"],
                              capture_output=True, text=True, check=False).stdout

    def shows_tokens(text: str) -> bool:
        tokens = re.search(r"Tokens Used\s*│\s*([\d,]+) / 256,000", text)
        return "sess_mon_tmux" in text and tokens is not None and tokens.group(1) != "0"

    def spent_tokens() -> bool:
        return any((e.get("tokens_used") or {}).get("total_tokens") for e in events_so_far(jsonl))

    run = None
    try:
        server = env.serve()
        wait_until(lambda: not port_8000_free() or server.poll() is not None)
        assert server.poll() is None, "the monitor server did not start"
        subprocess.run([*tmux, "new-session", "-d", "-s", "mon", "-x", "160", "-y", "45",
                        f"{sys.executable} {PLUGIN / 'monitor.py'}"], check=True, cwd=tmp_path,
                       env=env.env)
        run = env.orchestrate("sess_mon_tmux", env={"SIGIL_OFFLINE_LATENCY_MS": "150"})
        hold_when(run, spent_tokens)  # stopped once its file shows tokens spent
        wait_until(lambda: shows_tokens(pane()), "(monitor.py showing the run's tokens)")
        shown = pane()
        run.send_signal(signal.SIGCONT)
        _out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        assert "Sigil v2 Monitor" in shown and "Active" in shown, shown
        pane_text = shown
        operation = re.search(r"Current Operation\s*│\s*(\S+)", pane_text).group(1)
        assert operation != "-"
        component = re.search(r"Current Component\s*│\s*(\S+)", pane_text).group(1)
        assert component in ("cli", "router", "planner", "memory", "reasoning", "orchestrator",
                             "contracts", "tools", "context", "system")
        # After the run the panel shows the final total of the session's tokens.
        final = json.loads((env.cwd / "outputs" / "sessions" / "sess_mon_tmux.json"
                            ).read_text())["summary"]["total_tokens"]
        wait_until(lambda: f"{final:,} / 256,000" in pane(), f"(the final {final:,} tokens shown)")
    finally:
        if run is not None and run.poll() is None:
            run.send_signal(signal.SIGCONT)
            run.kill()
            run.wait()
        subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)
        env.cleanup()


def wait_until(condition, what: str = "", limit: float = 120.0) -> None:
    """Wait for ``condition()`` (a generous limit: a loaded machine is slow, not wrong)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"condition never met {what}"
        time.sleep(0.1)


def test_files_mode_follows_session_files_without_a_server(sigil_cli):
    sys.path.insert(0, str(Path(__file__).parent))
    from monitor_ws_helpers import make_event

    folder = sigil_cli.sessions
    folder.mkdir(parents=True)
    evs = [make_event("sess_file", level="info", component="planner", operation="create_plan",
                      message="Completed create_plan", tokens=3700),
           make_event("sess_file", level="debug", message="noise"),
           make_event("sess_file", level="error", component="tools", operation="websearch",
                      message="Search failed")]
    # the last line is still being written: no newline yet, so it must not be shown
    (folder / "sess_file.jsonl").write_text(
        "\n".join(json.dumps(e.to_dict()) for e in evs) + "\n" + '{"id": "partial')
    proc = sigil_cli("monitor", "--files", "--no-follow", "-s", "sess_file")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [
        f"{evs[0].timestamp[11:19]} [INFO] planner/create_plan: Completed create_plan (3700 tokens)",
        f"{evs[2].timestamp[11:19]} [ERROR] tools/websearch: Search failed",
    ]
    errors_only = sigil_cli("monitor", "--files", "--no-follow", "--level", "error")
    assert errors_only.stdout.splitlines() == ["--- sess_file ---", lines[1]]


def test_file_follower_skips_session_cassettes(tmp_path):
    import json

    from sigil_monitor_ws.follow import SessionFileFollower

    event = {"id": "log_1", "timestamp": "2026-01-01T00:00:00.000Z", "level": "info",
             "component": "cli", "operation": "initialize", "message": "Execution initialized",
             "session_id": "sess_a", "correlation_id": "sess_a", "operation_id": "op_1"}
    (tmp_path / "sess_a.jsonl").write_text(json.dumps(event) + "\n")
    (tmp_path / "sess_a.cassette.jsonl").write_text(
        json.dumps({"kind": "header", "task": "t", "provider": "anthropic"}) + "\n")
    events, _ = SessionFileFollower(tmp_path, recent=None).poll()
    assert [e.get("id") for e in events] == ["log_1"]
