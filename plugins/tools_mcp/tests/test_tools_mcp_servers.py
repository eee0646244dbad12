"""MCP servers over stdio and HTTP: a real third-party server (mcp-server-time from PyPI) and
a server of our own (the SDK's MCPServer/FastMCP) for every failure mode."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sigil_tools_mcp import catalog
from sigil_tools_mcp.client import SessionPool
from sigil_tools_mcp.settings import parse_server, parse_servers
from sigil_tools_mcp.tools import McpTool, mcp_tools

from sigil_core import ToolError


def pool_for(**entries: dict) -> SessionPool:
    return SessionPool(parse_servers(entries))


# --------------------------------------------------------------------------- mcp-server-time


async def test_real_time_server_lists_and_calls_its_tools(tools_mcp_time_server: Path,
                                                         tools_mcp_procs) -> None:
    pool = pool_for(time={"command": str(tools_mcp_time_server), "args": ["--local-timezone", "UTC"]})
    try:
        conn = await pool.get("time")
        assert {"get_current_time", "convert_time"} <= set(conn.tools)
        schema = conn.tools["get_current_time"]["input_schema"]
        assert schema["required"] == ["timezone"]

        paris = await conn.call("get_current_time", {"timezone": "Europe/Paris"})
        assert paris["timezone"] == "Europe/Paris"
        assert paris["datetime"][-6:] in ("+01:00", "+02:00")

        converted = await conn.call("convert_time", {"source_timezone": "UTC", "time": "12:00",
                                                     "target_timezone": "Asia/Tokyo"})
        assert converted["target"]["datetime"].startswith(converted["source"]["datetime"][:10]) \
            or converted["target"]["timezone"] == "Asia/Tokyo"
        assert "21:00" in converted["target"]["datetime"]

        with pytest.raises(ToolError) as err:
            await conn.call("get_current_time", {"timezone": "Nowhere/Atlantis"})
        assert err.value.code == "TOOL_002" and "Nowhere/Atlantis" in err.value.message

        # one session per server: the failure above did not cost a reconnect
        assert (await pool.get("time")) is conn and pool.connects == 1
        assert tools_mcp_procs.running(str(tools_mcp_time_server))
    finally:
        await pool.aclose()
    assert tools_mcp_procs.running(str(tools_mcp_time_server)) == []


async def test_allow_list_limits_the_registered_tools(tools_mcp_time_server: Path,
                                                     sigil_home: Path) -> None:
    servers = parse_servers({"time": {"command": str(tools_mcp_time_server),
                                      "allow": ["get_current_time"]}})
    tools = mcp_tools(servers, sigil_home)
    assert [t.name for t in tools] == ["time.get_current_time"]
    assert tools[0].server == "time" and tools[0].tool_name == "get_current_time"
    # Registered from the allow-list alone: nothing was started, the schema comes on first use.
    assert tools[0].schema_known is False
    assert catalog.cached_listing(sigil_home, servers["time"]) is None


# --------------------------------------------------------------------------- our own server


async def test_fake_server_success_failure_and_session_reuse(tools_mcp_fake, tools_mcp_procs):
    pool = pool_for(fake=tools_mcp_fake(timeout=20))
    try:
        conn = await pool.get("fake")
        assert await conn.call("add", {"a": 2, "b": 3}) == 5
        assert await conn.call("echo", {"text": "héllo"}) == "héllo"
        pid = await conn.call("pid", {})

        with pytest.raises(ToolError) as err:
            await conn.call("fail", {"message": "the disk is on fire"})
        assert err.value.code == "TOOL_002"
        assert "the disk is on fire" in err.value.message
        assert err.value.recoverable

        # the failure is the tool's, not the session's
        assert await conn.call("pid", {}) == pid
        assert pool.connects == 1
    finally:
        await pool.aclose()
    assert not tools_mcp_procs.alive(pid)


async def test_idempotency_hints_reach_the_tool_for_resumed_sessions(tools_mcp_fake):
    from sigil_core import tool_is_idempotent

    servers = parse_servers({"fake": tools_mcp_fake(timeout=20)})
    pool = SessionPool(servers)
    try:
        conn = await pool.get("fake")
        assert conn.tools["add"]["annotations"] == {"idempotentHint": True, "readOnlyHint": True}
        assert conn.tools["echo"]["annotations"] == {}
    finally:
        await pool.aclose()
    add = McpTool(servers["fake"], conn.tools["add"], home=Path("."))
    echo = McpTool(servers["fake"], conn.tools["echo"], home=Path("."))
    # A call an interrupted attempt started is run again on resume only for the first.
    assert tool_is_idempotent(add) and not tool_is_idempotent(echo)


async def test_slow_tool_times_out_and_the_session_survives(tools_mcp_fake):
    pool = pool_for(fake=tools_mcp_fake(timeout=0.5))
    try:
        conn = await pool.get("fake")
        with pytest.raises(ToolError) as err:
            await conn.call("slow", {"seconds": 30})
        assert err.value.code == "TOOL_003" and "0.5s" in err.value.message
        assert await conn.call("add", {"a": 1, "b": 1}) == 2
    finally:
        await pool.aclose()


async def test_arguments_are_checked_against_the_live_schema(tools_mcp_fake, sigil_home):
    # Registered from an allow-list: the schema is unknown until the server is connected,
    # so the tool validates against the live schema itself.
    server = parse_server("fake", tools_mcp_fake(allow=["add"]))
    [tool] = mcp_tools({"fake": server}, sigil_home)
    assert tool.input_schema == {"type": "object"}
    try:
        with pytest.raises(ToolError) as err:
            await tool.call({"a": "two", "b": 3})
        assert err.value.code == "TOOL_005" and "$.a" in err.value.message
        assert tool.input_schema["required"] == ["a", "b"]
        assert await tool.call({"a": 2, "b": 3}) == 5
    finally:
        from sigil_tools_mcp.sessions import close_loop_pool

        await close_loop_pool()
    # the live listing was cached: the next registration knows every schema
    [again] = mcp_tools({"fake": server}, sigil_home)
    assert again.schema_known and again.input_schema["required"] == ["a", "b"]


async def test_a_tool_the_server_does_not_have_is_tool_001(tools_mcp_fake, sigil_home):
    server = parse_server("fake", tools_mcp_fake(allow=["teleport"]))
    [tool] = mcp_tools({"fake": server}, sigil_home)
    try:
        with pytest.raises(ToolError) as err:
            await tool.call({})
        assert err.value.code == "TOOL_001" and "teleport" in err.value.message
    finally:
        from sigil_tools_mcp.sessions import close_loop_pool

        await close_loop_pool()


async def test_missing_command_is_tool_004():
    pool = pool_for(ghost={"command": "/nonexistent/mcp-server-ghost"})
    with pytest.raises(ToolError) as err:
        await pool.get("ghost")
    assert err.value.code == "TOOL_004"
    assert "ghost" in err.value.message and "could not be connected" in err.value.message
    await pool.aclose()


async def test_server_that_exits_at_start_is_tool_004_with_its_stderr(tools_mcp_fake):
    pool = pool_for(broken=tools_mcp_fake("crash", connect_timeout=20))
    with pytest.raises(ToolError) as err:
        await pool.get("broken")
    assert err.value.code == "TOOL_004"
    assert "missing API key FAKE_KEY" in err.value.message
    await pool.aclose()


async def test_server_that_never_answers_is_tool_004_and_is_stopped(tools_mcp_fake,
                                                                     tools_mcp_procs):
    pool = pool_for(mute=tools_mcp_fake("mute", connect_timeout=1.5))
    with pytest.raises(ToolError) as err:
        await pool.get("mute")
    assert err.value.code == "TOOL_004" and "handshake" in err.value.message
    await pool.aclose()
    assert tools_mcp_procs.running("tools_mcp_fake_server.py mute") == []


async def test_server_dying_mid_run_is_tool_004_and_the_next_call_reconnects(tools_mcp_fake,
                                                                            tools_mcp_procs):
    pool = pool_for(fake=tools_mcp_fake(timeout=20))
    try:
        conn = await pool.get("fake")
        first_pid = await conn.call("pid", {})
        with pytest.raises(ToolError) as err:
            await conn.call("die", {})
        assert err.value.code == "TOOL_004" and "went away" in err.value.message
        assert not tools_mcp_procs.alive(first_pid)
        fresh = await pool.get("fake")
        assert fresh is not conn and pool.connects == 2
        second_pid = await fresh.call("pid", {})
        assert second_pid != first_pid
    finally:
        await pool.aclose()
    assert not tools_mcp_procs.alive(second_pid)


async def test_concurrent_first_calls_share_one_connection(tools_mcp_fake):
    pool = pool_for(fake=tools_mcp_fake(timeout=20))
    try:
        conns = await asyncio.gather(*(pool.get("fake") for _ in range(5)))
        assert len({id(c) for c in conns}) == 1 and pool.connects == 1
        sums = await asyncio.gather(*(conns[0].call("add", {"a": i, "b": i}) for i in range(5)))
        assert sums == [0, 2, 4, 6, 8]
    finally:
        await pool.aclose()


async def test_unknown_server_is_tool_001():
    with pytest.raises(ToolError) as err:
        await pool_for().get("nowhere")
    assert err.value.code == "TOOL_001"


# --------------------------------------------------------------------------- HTTP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tools_mcp_http_server(tools_mcp_fake):
    port = _free_port()
    entry = tools_mcp_fake("http")
    proc = subprocess.Popen([sys.executable, *entry["args"], str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("the HTTP fake server exited")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_streamable_http_server(tools_mcp_http_server: str):
    pool = pool_for(web={"url": tools_mcp_http_server, "timeout": 10})
    try:
        conn = await pool.get("web")
        assert "add" in conn.tools
        assert await conn.call("add", {"a": 20, "b": 22}) == 42
        with pytest.raises(ToolError) as err:
            await conn.call("fail", {"message": "over http"})
        assert err.value.code == "TOOL_002"
    finally:
        await pool.aclose()


async def test_unreachable_http_server_is_tool_004():
    pool = pool_for(web={"url": f"http://127.0.0.1:{_free_port()}/mcp", "connect_timeout": 10})
    with pytest.raises(ToolError) as err:
        await pool.get("web")
    assert err.value.code == "TOOL_004"
    await pool.aclose()


def test_registered_tool_shape(tools_mcp_fake, sigil_home):
    server = parse_server("fake", tools_mcp_fake())
    tools = {t.name: t for t in mcp_tools({"fake": server}, sigil_home)}
    assert set(tools) == {"fake.add", "fake.echo", "fake.fail", "fake.slow", "fake.pid", "fake.die"}
    add = tools["fake.add"]
    assert isinstance(add, McpTool)
    assert add.description == "Add two integers."
    assert add.input_schema["properties"]["a"]["type"] == "integer"


async def test_a_server_schema_that_is_not_json_schema_is_tool_005(sigil_home):
    server = parse_server("odd", {"command": "/nonexistent/never-started"})
    tool = McpTool(server, {"name": "t", "description": "",
                            "input_schema": {"type": "object",
                                             "properties": {"n": {"type": "nmber"}}}},
                   home=sigil_home)
    # the core validates against input_schema: it must stay valid JSON Schema
    assert tool.input_schema == {"type": "object"}
    with pytest.raises(ToolError) as err:
        await tool.call({"n": 1})  # refused before any connection (the command does not exist)
    assert err.value.code == "TOOL_005" and "invalid input schema" in err.value.message
