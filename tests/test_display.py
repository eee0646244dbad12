"""The live progress display on a terminal, and plain output through a pipe."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

from core_cli import LEAD_TASK


def test_terminal_gets_a_live_progress_display(sigil):
    master, slave = pty.openpty()
    env = {**sigil.env, "SIGIL_OFFLINE_LATENCY_MS": "150", "TERM": "xterm", "COLUMNS": "100"}
    proc = subprocess.Popen([sys.executable, "-m", "sigil_core", "orchestrate", LEAD_TASK],
                            cwd=sigil.cwd, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    text = screen.decode("utf-8", "replace")
    assert proc.returncode == 0, text[-2000:]
    assert "Phase" in text and "execute" in text          # the live panel
    assert "running (" in text                              # a step shown while it runs
    assert "/ 256,000" in text                              # tokens against the budget
    assert "\x1b[" in text                                  # drawn with terminal control codes
    assert "Tokens:" in text                                # and the final summary


def test_pipe_gets_plain_lines_without_control_codes(sigil):
    proc = sigil("orchestrate", "-v", LEAD_TASK)
    assert proc.returncode == 0
    assert "\x1b[" not in proc.stdout + proc.stderr
    assert "cli/initialize: Execution initialized" in proc.stderr
