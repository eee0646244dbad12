"""``monitor_ws`` settings that are wrong: exit 2 with one line naming the key, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _serve(tmp_path: Path, config: str, env: dict[str, str] | None = None):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "config.yaml").write_text(config)
    base = {k: v for k, v in os.environ.items() if not k.startswith("SIGIL_")}
    return subprocess.run(
        [sys.executable, "-m", "sigil_core", "monitor", "serve", "--port", "0", "--no-follow",
         "--exit-when-idle", "0.5"],
        cwd=tmp_path, env={**base, "SIGIL_HOME": str(home), **(env or {})},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


@pytest.mark.parametrize("config, key, says", [
    ("monitor_ws: {max_streams: abc}\n", "monitor_ws.max_streams", "whole number"),
    ("monitor_ws: {max_stream: 5}\n", "monitor_ws.max_stream", "did you mean 'max_streams'"),
    ("monitor_ws: {idle_timeout_seconds: -1}\n", "monitor_ws.idle_timeout_seconds", "0 or more"),
    ("monitor_ws: {allowed_origins: http://x}\n", "monitor_ws.allowed_origins", "list"),
    ("monitor_ws: {max_streams: 0}\n", "monitor_ws.max_streams", "at least 1"),
])
def test_bad_settings_exit_2_with_one_line(tmp_path, config, key, says):
    proc = _serve(tmp_path, config)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and says in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_linger_env_is_named(tmp_path):
    proc = _serve(tmp_path, "monitor_ws: {}\n", env={"SIGIL_MONITOR_LINGER": "nan"})
    assert proc.returncode == 2 and "SIGIL_MONITOR_LINGER" in proc.stderr, proc.stderr


def test_good_settings_still_serve(tmp_path):
    proc = _serve(tmp_path, "monitor_ws: {max_streams: 5, idle_timeout_seconds: 30}\n")
    assert proc.returncode == 0, proc.stderr
    assert "Sigil monitor on" in proc.stderr
