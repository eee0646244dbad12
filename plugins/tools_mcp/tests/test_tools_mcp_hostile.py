"""Hostile or noisy MCP servers: garbage on stdout, secrets and floods on stderr."""

from __future__ import annotations

import json
import subprocess
import sys


def test_a_server_writing_garbage_is_one_tool_004_with_the_first_bad_line(tools_mcp_cli,
                                                                           tools_mcp_fake):
    tools_mcp_cli.write_config({"mcp_servers": {"noisy": tools_mcp_fake("garbage"), "fake": tools_mcp_fake()}})
    proc = tools_mcp_cli("tools", "list", "--json")
    assert proc.returncode == 1, proc.stderr
    listing = json.loads(proc.stdout)
    assert "fake.add" in {r["name"] for r in listing["tools"]}  # the others still listed
    message = listing["errors"]["noisy"]
    assert message.startswith("TOOL_004") and "not MCP on stdout" in message, message
    assert "INFO starting worker 0 {not json" in message and "stopped" in message
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) <= 2, proc.stderr


def test_secrets_in_a_server_stderr_are_redacted(tools_mcp_cli, tools_mcp_fake):
    tools_mcp_cli.write_config({"mcp_servers": {"leaky": tools_mcp_fake("secret", env={"FAKE_SECRET":
                                                                     "hunter2-abcdef"})}})
    tools_mcp_cli.env["ANTHROPIC_API_KEY"] = "sk-ant-test-SECRETKEY"
    tools_mcp_cli.env["SIGIL_PROVIDER"] = "offline"
    for args in (("tools", "list"), ("tools", "list", "--json")):
        proc = tools_mcp_cli(*args)
        shown = proc.stdout + proc.stderr
        assert proc.returncode == 1 and "auth failed for key ***" in shown, shown
        assert "hunter2-abcdef" not in shown and "SECRETKEY" not in shown, shown


def test_a_flood_on_stderr_is_kept_bounded_and_its_end_reported(tools_mcp_cli, tools_mcp_fake):
    tools_mcp_cli.write_config({"mcp_servers": {"flood": tools_mcp_fake("flood")}})
    proc = tools_mcp_cli("tools", "list", "--json")
    assert proc.returncode == 1
    message = json.loads(proc.stdout)["errors"]["flood"]
    assert "flood done, giving up" in message and len(message) < 1000


def test_stderr_buffer_keeps_only_the_end():
    from sigil_tools_mcp.client import StderrBuffer

    buffer = StderrBuffer(limit=4096)
    child = subprocess.run([sys.executable, "-c", ("import sys\nfor i in range(20000): "
                            "sys.stderr.write(f'line {i}\\n')")], stderr=buffer.file, check=False)
    assert child.returncode == 0
    buffer.close()
    buffer._thread.join(10)
    text = buffer.text()
    assert len(text.encode()) <= 4096 and text.endswith("line 19999\n")
