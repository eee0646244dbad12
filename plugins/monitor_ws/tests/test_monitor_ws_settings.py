"""``monitor_ws`` settings that are wrong: exit 2 with one line naming the key, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from sigil_core.testing import SigilCLI


def _serve(tmp_path: Path, config: str, env: dict[str, str] | None = None):
    cli = SigilCLI(tmp_path)
    cli.write_config(config)
    return cli("monitor", "serve", "--port", "0", "--no-follow", "--exit-when-idle", "0.5",
               env=env)


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
