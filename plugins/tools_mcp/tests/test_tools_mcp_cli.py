"""``sigil tools`` and ``sigil orchestrate`` with tools, through the real CLI in subprocesses."""

from __future__ import annotations

import json


def tool_events(events: list[dict]) -> list[dict]:
    return [e for e in events if e["component"] == "tools"]


def error_lines(proc) -> list[str]:
    """stderr without other plugins' load warnings (not this plugin's business)."""
    return [line for line in proc.stderr.strip().splitlines()
            if line and not line.startswith("warning: plugin ")]


def test_tools_list_shows_every_tool_with_its_schema(tools_mcp_cli, tools_mcp_fake):
    tools_mcp_cli.write_config({"mcp_servers": {"fake": tools_mcp_fake(), "broken": tools_mcp_fake("crash")}})
    proc = tools_mcp_cli("tools", "list", "--json")
    # a server that does not start is reported (exit 1) without hiding the others
    assert proc.returncode == 1, proc.stderr
    listing = json.loads(proc.stdout)
    rows = {r["name"]: r for r in listing["tools"]}
    assert {"calculator", "current_time", "fake.add", "fake.fail"} <= set(rows)
    assert rows["fake.add"]["server"] == "fake" and rows["fake.add"]["tool_name"] == "add"
    assert rows["fake.add"]["input_schema"]["required"] == ["a", "b"]
    assert rows["calculator"]["server"] == "builtin"
    assert list(listing["errors"]) == ["broken"]
    assert listing["errors"]["broken"].startswith("TOOL_004")
    assert "missing API key FAKE_KEY" in listing["errors"]["broken"]
    assert "Traceback" not in proc.stderr

    text = tools_mcp_cli("tools", "list", "--server", "fake")
    assert text.returncode == 0
    assert "fake.add  (server: fake)" in text.stdout and '"required": ["a", "b"]' in text.stdout
    assert "calculator" not in text.stdout


def test_tools_call_by_hand(tools_mcp_cli, tools_mcp_fake):
    tools_mcp_cli.write_config({"mcp_servers": {"fake": tools_mcp_fake()}})
    proc = tools_mcp_cli("tools", "call", "fake", "add", "--args", '{"a": 20, "b": 22}')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == 42

    proc = tools_mcp_cli("tools", "call", "builtin", "calculator", "--args",
                         '{"expression": "6 * 7"}')
    assert proc.returncode == 0 and json.loads(proc.stdout)["result"] == 42

    failed = tools_mcp_cli("tools", "call", "fake", "fail", "--args", '{"message": "nope"}')
    assert failed.returncode == 1
    [line] = error_lines(failed)
    assert line.startswith("Error: TOOL_002: tool 'fail' on MCP server 'fake' failed:")
    assert line.endswith("nope")


def test_tools_call_bad_input_is_exit_2_with_one_line(tools_mcp_cli, tools_mcp_fake):
    tools_mcp_cli.write_config({"mcp_servers": {"fake": tools_mcp_fake(allow=["add", "echo"])}})
    cases = {
        ("fake", "add", "--args", "{a: 1}"): "--args is not valid JSON",
        ("fake", "add", "--args", "[1, 2]"): "--args must be a JSON object",
        ("fake", "add", "--args", '{"a": "x", "b": 1}'): "TOOL_005",
        ("fake", "fail", "--args", "{}"): "not in the allow-list",
        ("nowhere", "add"): "unknown server 'nowhere'",
        ("builtin", "teleport"): "has no tool 'teleport'",
    }
    for args, message in cases.items():
        proc = tools_mcp_cli("tools", "call", *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = error_lines(proc)
        assert len(lines) == 1 and message in lines[0], (args, lines)


def test_bad_mcp_servers_config_is_exit_2(tools_mcp_cli):
    tools_mcp_cli.write_config({"mcp_servers": {"fake": {"command": "x", "timout": 3}}})
    proc = tools_mcp_cli("tools", "list")
    assert proc.returncode == 2
    assert error_lines(proc) == [("Error: mcp_servers.fake: unknown key 'timout'; known keys: "
                                   "allow, args, command, connect_timeout, cwd, enabled, env, "
                                   "headers, timeout, url")]


def test_orchestrate_uses_a_real_mcp_server_and_a_builtin_tool(tools_mcp_cli,
                                                              tools_mcp_time_server,
                                                              tools_mcp_procs):
    tools_mcp_cli.write_config({"mcp_servers": {
        "time": {"command": str(tools_mcp_time_server), "allow": ["get_current_time"]}}})
    proc = tools_mcp_cli("orchestrate", "Calculate (17 + 4) * 3 and tell me the current time "
                                        "in Tokyo")
    assert proc.returncode == 0, proc.stderr
    events = tools_mcp_cli.session_jsonl()
    completed = {e["operation"]: e for e in tool_events(events)
                 if e["message"].startswith("Completed")}
    assert set(completed) == {"calculator", "current_time", "time.get_current_time"}
    assert completed["time.get_current_time"]["metadata"]["tool_server"] == "time"
    # The journal holds each call's arguments and result (a resumed session reuses them).
    assert completed["calculator"]["metadata"] == {
        "tool_name": "calculator", "tool_server": "builtin", "results_count": 1,
        "arguments": {"expression": "(17 + 4) * 3"},
        "result": {"expression": "(17 + 4) * 3", "result": 63}}
    # The tool calls happen inside the step's react operation.
    react = [e for e in events if e["component"] == "reasoning" and e["operation"] == "react"
             and e["message"].startswith("Completed")]
    assert len(react) == 1
    assert completed["calculator"]["parent_operation_id"] == react[0]["operation_id"]
    assert react[0]["metadata"]["tools_used"] == ["calculator", "current_time",
                                                  "time.get_current_time"]
    assert "63" in proc.stdout
    # each tool is called once: the core does not call again what react already called
    starts = [e["operation"] for e in tool_events(events) if e["message"].startswith("Starting")]
    assert sorted(starts) == ["calculator", "current_time", "time.get_current_time"]
    assert tools_mcp_procs.running(str(tools_mcp_time_server)) == []


def test_orchestrate_survives_a_server_that_dies_or_never_starts(tools_mcp_cli, tools_mcp_fake,
                                                                 tools_mcp_procs):
    tools_mcp_cli.write_config({"mcp_servers": {
        "crashy": tools_mcp_fake(allow=["die"]),
        "broken": tools_mcp_fake("crash", allow=["add"]),
    }})
    proc = tools_mcp_cli("orchestrate", "Run the crashy diagnostics and the broken adder")
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.returncode == 0, proc.stderr
    failed = {e["operation"]: e for e in tool_events(tools_mcp_cli.session_jsonl())
              if e["message"].startswith("Failed")}
    assert failed["crashy.die"]["error_info"]["error_code"] == "TOOL_004"
    assert "went away" in failed["crashy.die"]["error_info"]["error_message"]
    assert failed["broken.add"]["error_info"]["error_code"] == "TOOL_004"
    assert "missing API key FAKE_KEY" in failed["broken.add"]["error_info"]["error_message"]
    assert failed["broken.add"]["error_info"]["recoverable"] is True
    assert tools_mcp_procs.running("tools_mcp_fake_server.py") == []
