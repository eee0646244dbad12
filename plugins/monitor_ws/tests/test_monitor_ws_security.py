"""Robustness and security of the monitor server: stalled clients, limits, tokens, origins."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import sys
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

sys.path.insert(0, str(Path(__file__).parent))
from monitor_ws_helpers import Client, dicts, make_event, wait_for
from sigil_monitor_ws.server import (
    STREAM_PATH,
    MonitorConfigError,
    MonitorServer,
    PortInUseError,
    ServerSettings,
)


async def start(**kw) -> MonitorServer:
    return await MonitorServer(ServerSettings(port=0, **kw)).start()


def url(server: MonitorServer, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}{STREAM_PATH}" + (f"?{query}" if query else "")


async def raw_stalled_client(port: int) -> socket.socket:
    """Completes the WebSocket handshake, then never reads another byte."""
    key = base64.b64encode(os.urandom(16)).decode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"GET {STREAM_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.transport.pause_reading()
    return writer  # keep it open; nothing reads from it


async def test_a_stalled_client_is_dropped_and_readers_get_everything():
    server = await start(stall_timeout=1.5, ping_interval=0.5)
    try:
        stalled = await raw_stalled_client(server.port)
        readers = [Client(await connect(url(server))) for _ in range(20)]
        for r in readers:
            await r.send({"type": "config", "buffer_size": 50, "flush_interval_ms": 20})
        await wait_for(lambda: len(server.hub.subscribers) == 21
                       and all(s.live for s in server.hub.subscribers))
        # A steady stream with fat events, as a run would produce.
        evs = [make_event(message="x" * 1000) for _ in range(500)]
        for i in range(0, len(evs), 50):
            server.hub.publish(dicts(*evs[i:i + 50]))
            await asyncio.sleep(0.02)
        await wait_for(lambda: server.dropped_clients == 1)
        assert len(server.hub.subscribers) == 20
        for r in readers:
            got = await r.entries_until(evs[-1].id)
            ids = [e["id"] for e in got if e["id"].startswith("log_t_")]
            assert ids[-len(evs):] == [e.id for e in evs]
            await r.ws.close()
        stalled.close()
    finally:
        await server.stop()


async def test_a_client_whose_bounded_queue_overflows_is_dropped_and_others_are_not():
    server = await start(queue_max=8, stall_timeout=30, ping_interval=30)
    try:
        slow = Client(await connect(url(server), max_queue=2))
        await slow.send({"type": "config", "buffer_size": 1})
        fine = Client(await connect(url(server)))
        await fine.send({"type": "config", "buffer_size": 100})
        await wait_for(lambda: all(s.live for s in server.hub.subscribers)
                       and {s.buffer_size for s in server.hub.subscribers} == {1, 100})
        # 20 one-entry messages for the slow client at once: more than its queue holds.
        evs = [make_event() for _ in range(20)]
        server.hub.publish(dicts(*evs))
        await wait_for(lambda: server.dropped_clients == 1 and len(server.hub.subscribers) == 1)
        assert next(iter(server.hub.subscribers)).buffer_size == 100
        got = await fine.entries_until(evs[-1].id)
        assert [e["id"] for e in got] == [e.id for e in evs]
        await fine.ws.close()
        await slow.ws.close()
    finally:
        await server.stop()


async def test_clients_get_the_configured_heartbeat_interval_until_they_ask_for_another():
    server = await start(heartbeat_interval=0.25)
    try:
        async with connect(url(server)) as ws:
            client = Client(ws)
            await wait_for(lambda: len(server.hub.subscribers) == 1)
            [sub] = server.hub.subscribers
            assert sub.heartbeat_interval == 0.25
            await client.send({"type": "config", "heartbeat_interval_ms": 2000})
            await wait_for(lambda: sub.heartbeat_interval == 2.0)
    finally:
        await server.stop()


async def test_idle_streams_are_closed_with_a_reason():
    server = await start(idle_timeout=0.5)
    try:
        async with connect(url(server)) as ws:
            client = Client(ws)
            msg = await client.next("error", timeout=5)
            assert "idle timeout" in msg["error"]
            with pytest.raises(ConnectionClosed) as info:
                await client.next(timeout=5)
            assert info.value.rcvd.code == 1001
    finally:
        await server.stop()


async def test_concurrent_stream_cap():
    server = await start(max_streams=2)
    try:
        a, b = await connect(url(server)), await connect(url(server))
        await wait_for(lambda: len(server.hub.subscribers) == 2)
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server))
        assert info.value.response.status_code == 503
        await a.close()
        await wait_for(lambda: len(server.hub.subscribers) == 1)
        c = await connect(url(server))  # a slot is free again
        await c.close()
        await b.close()
    finally:
        await server.stop()


def test_non_loopback_bind_without_token_refuses_to_start():
    with pytest.raises(MonitorConfigError, match="needs a token"):
        MonitorServer(ServerSettings(host="0.0.0.0", port=0))
    MonitorServer(ServerSettings(host="0.0.0.0", port=0, token="s3cret"))  # fine with one


def test_cli_serve_on_all_interfaces_without_token_exits_2(sigil_cli):
    proc = sigil_cli("monitor", "serve", "--host", "0.0.0.0", "--port", "0", "--no-follow")
    assert proc.returncode == 2
    assert "needs a token" in proc.stderr and "Traceback" not in proc.stderr


async def test_token_is_required_by_header_or_query_when_set():
    server = await start(token="s3cret")
    try:
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server))
        assert info.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            await connect(url(server, "token=wrong"))
        async with connect(url(server, "token=s3cret")) as ws:
            assert (await Client(ws).next())["type"] == "heartbeat"
        async with connect(url(server), additional_headers={"Authorization": "Bearer s3cret"}) \
                as ws:
            assert (await Client(ws).next())["type"] == "heartbeat"
        base = f"http://127.0.0.1:{server.port}/monitoring/v1"
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{base}/sessions")).status_code == 401
            ok = await http.get(f"{base}/sessions", headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200
    finally:
        await server.stop()


async def test_browser_origin_is_checked():
    server = await start()
    try:
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server), origin="http://evil.example")
        assert info.value.response.status_code == 403
        async with connect(url(server), origin=f"http://localhost:{server.port}") as ws:
            assert (await Client(ws).next())["type"] == "heartbeat"
        # DNS rebinding: a foreign name in Host is refused on the token-less server
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{server.port}/monitoring/v1/health",
                               headers={"Host": f"evil.example:{server.port}"})
            assert r.status_code == 403
        # browsers never publish
        with pytest.raises(InvalidStatus):
            await connect(f"ws://127.0.0.1:{server.port}/monitoring/v1/ingest",
                          origin=f"http://localhost:{server.port}")
    finally:
        await server.stop()


async def test_allowed_origins_from_config_are_accepted():
    server = await start(allowed_origins=["https://ops.example"])
    try:
        async with connect(url(server), origin="https://ops.example") as ws:
            assert (await Client(ws).next())["type"] == "heartbeat"
    finally:
        await server.stop()


async def test_port_in_use_is_a_clear_error_not_a_crash():
    server = await start()
    try:
        with pytest.raises(PortInUseError, match=f"port {server.port}"):
            await MonitorServer(ServerSettings(port=server.port)).start()
    finally:
        await server.stop()
