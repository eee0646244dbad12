"""The monitor protocol (DESIGN §6) against the real server on a real socket."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).parent))
from monitor_ws_helpers import Client, dicts, make_event, wait_for
from sigil_monitor_ws.server import STREAM_PATH, MonitorServer, ServerSettings

HEARTBEAT_KEYS = {"session_id", "is_alive", "current_operation", "current_component",
                  "tokens_used", "budget_remaining", "logs_since_last_heartbeat", "uptime_seconds"}


@pytest.fixture
async def monitor_ws_server():
    server = await MonitorServer(ServerSettings(port=0)).start()
    try:
        yield server
    finally:
        await server.stop()


def stream_url(server: MonitorServer, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}{STREAM_PATH}" + (f"?{query}" if query else "")


async def open_client(server, query: str = "", config: dict | None = None) -> tuple:
    ws = await connect(stream_url(server, query))
    client = Client(ws)
    hello = await client.next("heartbeat")
    if config is not None:
        await client.send({"type": "config", **config})
    await wait_for(lambda: any(s.live for s in server.hub.subscribers)
                   and all(s.live for s in server.hub.subscribers))
    return ws, client, hello


async def test_connect_sends_heartbeat_with_every_field(monitor_ws_server):
    ws, _client, hello = await open_client(monitor_ws_server)
    async with ws:
        assert hello["type"] == "heartbeat" and "timestamp" in hello
        assert set(hello["heartbeat"]) == HEARTBEAT_KEYS
        assert hello["heartbeat"]["is_alive"] is False


async def test_log_message_carries_the_event_as_the_core_writes_it(monitor_ws_server):
    ws, client, _ = await open_client(monitor_ws_server, config={"buffer_size": 1})
    async with ws:
        ev = make_event(used=1200, tokens=400, message="Completed route_request",
                        duration_ms=12.5)
        monitor_ws_server.hub.publish(dicts(ev))
        msg = await client.next("log")
        assert msg["entries"] == [json.loads(json.dumps(ev.to_dict()))]
        assert msg["timestamp"].endswith("Z")


async def test_buffer_flushes_when_full(monitor_ws_server):
    ws, client, _ = await open_client(
        monitor_ws_server, config={"buffer_size": 3, "flush_interval_ms": 60_000})
    async with ws:
        evs = [make_event() for _ in range(3)]
        monitor_ws_server.hub.publish(dicts(*evs))
        msg = await client.next("log")
        assert [e["id"] for e in msg["entries"]] == [e.id for e in evs]


async def test_buffer_flushes_when_the_interval_passes(monitor_ws_server):
    ws, client, _ = await open_client(
        monitor_ws_server, config={"buffer_size": 1000, "flush_interval_ms": 20})
    async with ws:
        ev = make_event()
        monitor_ws_server.hub.publish(dicts(ev))
        msg = await client.next("log")
        assert [e["id"] for e in msg["entries"]] == [ev.id]


@pytest.mark.parametrize("level", ["error", "critical"])
async def test_error_and_critical_flush_at_once_with_what_was_buffered(monitor_ws_server, level):
    # An hour-long interval and a big buffer: only the error can cause this flush.
    ws, client, _ = await open_client(
        monitor_ws_server, config={"buffer_size": 1000, "flush_interval_ms": 60_000})
    async with ws:
        before = [make_event(), make_event()]
        bad = make_event(level=level, message="Failed plan")
        monitor_ws_server.hub.publish(dicts(*before, bad))
        msg = await client.next("log")
        assert [e["id"] for e in msg["entries"]] == [before[0].id, before[1].id, bad.id]


FILTER_CASES = {
    "query session_id": ("session_id=sess_b", None, lambda e: e.session_id == "sess_b"),
    "query components": ("components=planner,memory", None,
                         lambda e: e.component in ("planner", "memory")),
    "query levels": ("levels=warning,error", None, lambda e: e.level in ("warning", "error")),
    "config levels": ("", {"levels": ["debug"]}, lambda e: e.level == "debug"),
    "config correlation_id": ("", {"correlation_id": "corr_x"},
                              lambda e: e.correlation_id == "corr_x"),
    "config operation_id (and its children)": ("", {"operation_id": "op_parent"},
                                               lambda e: "op_parent" in (e.operation_id,
                                                                         e.parent_operation_id)),
    "query components + config levels (monitor.py)": (
        "components=reasoning", {"levels": ["info", "warning", "error", "critical"]},
        lambda e: e.component == "reasoning" and e.level != "debug"),
}


def _mixed_events():
    evs = []
    for sid in ("sess_a", "sess_b"):
        for comp in ("router", "planner", "memory", "reasoning"):
            for level in ("debug", "info", "warning", "error"):
                evs.append(make_event(sid, level=level, component=comp))
    evs.append(make_event(correlation_id="corr_x", level="debug", component="reasoning"))
    evs.append(make_event(operation_id="op_parent", component="planner"))
    evs.append(make_event(parent="op_parent", component="reasoning", level="debug"))
    return evs


@pytest.mark.parametrize("case", list(FILTER_CASES))
async def test_filters_select_exactly_the_matching_entries(monitor_ws_server, case):
    query, filt, wanted = FILTER_CASES[case]
    config = {"buffer_size": 1}
    if filt:
        config["filter"] = filt
    ws, client, _ = await open_client(monitor_ws_server, query, config)
    async with ws:
        evs = _mixed_events()
        expected = [e.id for e in evs if wanted(e)]
        assert expected and len(expected) < len(evs)
        monitor_ws_server.hub.publish(dicts(*evs))
        got = await client.entries_until(expected[-1])
        assert [e["id"] for e in got] == expected


async def test_update_filter_changes_what_arrives_next(monitor_ws_server):
    ws, client, _ = await open_client(monitor_ws_server, config={"buffer_size": 1})
    async with ws:
        await client.send({"type": "update_filter", "filter": {"components": ["memory"]}})
        await wait_for(lambda: next(iter(monitor_ws_server.hub.subscribers)).filter.components
                       == {"memory"})
        skipped, kept = make_event(component="router"), make_event(component="memory")
        monitor_ws_server.hub.publish(dicts(skipped, kept))
        got = await client.entries_until(kept.id)
        assert [e["id"] for e in got] == [kept.id]
        # null clears a key again
        await client.send({"type": "update_filter", "filter": {"components": None}})
        await wait_for(lambda: next(iter(monitor_ws_server.hub.subscribers)).filter.components
                       is None)
        again = make_event(component="router")
        monitor_ws_server.hub.publish(dicts(again))
        assert [e["id"] for e in await client.entries_until(again.id)] == [again.id]


async def test_pause_holds_entries_and_resume_delivers_them(monitor_ws_server):
    ws, client, _ = await open_client(monitor_ws_server, config={"buffer_size": 1})
    async with ws:
        sub = next(iter(monitor_ws_server.hub.subscribers))
        await client.send({"type": "pause"})
        await wait_for(lambda: sub.paused)
        held = [make_event(), make_event(level="error"), make_event()]
        monitor_ws_server.hub.publish(dicts(*held))
        assert sub.queue.empty() and len(sub.backlog) == 3  # nothing went out, even the error
        await client.send({"type": "resume"})
        msg = await client.next(("log", "buffer_flush"))
        assert msg["type"] == "buffer_flush"
        assert [e["id"] for e in msg["entries"]] == [e.id for e in held]
        live = make_event()
        monitor_ws_server.hub.publish(dicts(live))
        assert (await client.next(("log", "buffer_flush")))["entries"][0]["id"] == live.id


async def test_heartbeat_reports_session_operation_tokens_and_budget(monitor_ws_server):
    hub = monitor_ws_server.hub
    hub.publish(dicts(
        make_event("sess_h", component="orchestrator", operation="orchestrate",
                   message="Starting orchestrate", operation_id="op_root", used=0),
        make_event("sess_h", component="reasoning", operation="tree_of_thoughts",
                   message="Starting tree_of_thoughts", operation_id="op_tot", parent="op_root",
                   used=15_400),
    ))
    ws, client, hello = await open_client(
        monitor_ws_server, "session_id=sess_h",
        {"heartbeat_interval_ms": 100, "filter": {"levels": ["info"]}})
    async with ws:
        beat = hello["heartbeat"]
        assert beat["session_id"] == "sess_h" and beat["is_alive"] is True
        assert (beat["current_operation"], beat["current_component"]) == (
            "tree_of_thoughts", "reasoning")
        assert (beat["tokens_used"], beat["budget_remaining"]) == (15_400, 240_600)
        hub.publish(dicts(make_event("sess_h", component="reasoning",
                                     operation="tree_of_thoughts", operation_id="op_tot",
                                     message="Completed tree_of_thoughts", duration_ms=5.0,
                                     used=20_000),
                          make_event("sess_h", level="debug")))
        hub.end_session("sess_h")
        beat = (await client.next("heartbeat"))["heartbeat"]
        while beat["logs_since_last_heartbeat"] == 0 and beat["is_alive"]:
            beat = (await client.next("heartbeat"))["heartbeat"]
        assert beat["is_alive"] is False
        assert beat["tokens_used"] == 20_000
        # the debug entry did not match the client's filter: one log since the last beat
        assert beat["logs_since_last_heartbeat"] == 1
        assert beat["uptime_seconds"] >= 0


async def test_late_joiner_gets_history_first_then_live_without_duplicates(monitor_ws_server):
    hub = monitor_ws_server.hub
    past = [make_event("sess_l", level=lvl) for lvl in ("info", "debug", "warning", "info")]
    hub.publish(dicts(*past, make_event("sess_other")))
    ws, client, _ = await open_client(
        monitor_ws_server, "session_id=sess_l",
        {"filter": {"levels": ["info", "warning"]}, "buffer_size": 1})
    async with ws:
        first = await client.next(("log", "buffer_flush"))
        assert first["type"] == "buffer_flush"
        assert [e["id"] for e in first["entries"]] == [past[0].id, past[2].id, past[3].id]
        live = make_event("sess_l")
        hub.publish(dicts(past[0], live))  # a repeat of a known event is ignored
        msg = await client.next(("log", "buffer_flush"))
        assert msg["type"] == "log" and [e["id"] for e in msg["entries"]] == [live.id]


async def test_malformed_messages_get_errors_and_the_connection_stays(monitor_ws_server):
    ws, client, _ = await open_client(monitor_ws_server)
    async with ws:
        bad = ["not json", "[1,2]", json.dumps({"type": "dance"}),
               json.dumps({"type": "update_filter"}),
               json.dumps({"type": "update_filter", "filter": {"colour": "red"}}),
               json.dumps({"type": "config", "filter": {"levels": ["loud"]}}),
               json.dumps({"type": "config", "buffer_size": 0})]
        errors = []
        for raw in bad:
            await client.send(raw)
            errors.append((await client.next("error"))["error"])
        assert "not valid JSON" in errors[0]
        assert "unknown message type 'dance'" in errors[2]
        assert "'colour'" in errors[4] and "'loud'" in errors[5] and "buffer_size" in errors[6]
        await client.send({"type": "config", "buffer_size": 1})
        ev = make_event()
        monitor_ws_server.hub.publish(dicts(ev))
        assert (await client.next("log"))["entries"][0]["id"] == ev.id


async def test_a_storm_of_bad_messages_closes_with_policy_violation(monitor_ws_server):
    _ws, client, _ = await open_client(monitor_ws_server)
    for _ in range(60):
        try:
            await client.send("x")
        except ConnectionClosed:
            break
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await client.next()
    assert info.value.rcvd.code == 1008


async def test_messages_over_1mb_are_refused(monitor_ws_server):
    _ws, client, _ = await open_client(monitor_ws_server)
    await client.send(json.dumps({"type": "pause", "pad": "x" * (1024 * 1024)}))
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await client.next()
    assert info.value.rcvd.code == 1009


async def test_rest_health_sessions_and_events(monitor_ws_server):
    hub = monitor_ws_server.hub
    evs = [make_event("sess_r", used=100), make_event("sess_r", level="error", used=300),
           make_event("sess_s")]
    hub.publish(dicts(*evs))
    hub.end_session("sess_s")
    base = f"http://127.0.0.1:{monitor_ws_server.port}/monitoring/v1"
    async with httpx.AsyncClient() as http:
        health = (await http.get(f"{base}/health")).json()
        assert health["status"] == "ok" and health["service"] == "sigil-monitor"
        assert health["sessions"] == 2 and health["live_sessions"] == 1
        sessions = (await http.get(f"{base}/sessions")).json()["sessions"]
        by_id = {s["session_id"]: s for s in sessions}
        assert by_id["sess_r"]["events"] == 2 and by_id["sess_r"]["errors"] == 1
        assert by_id["sess_r"]["tokens_used"] == 300 and by_id["sess_s"]["is_alive"] is False
        one = (await http.get(f"{base}/sessions/sess_r")).json()
        assert one["budget_remaining"] == 256_000 - 300
        events = (await http.get(f"{base}/sessions/sess_r/events")).json()["events"]
        assert [e["id"] for e in events] == [evs[0].id, evs[1].id]
        errors = (await http.get(f"{base}/sessions/sess_r/events?levels=error")).json()
        assert [e["id"] for e in errors["events"]] == [evs[1].id]
        assert (await http.get(f"{base}/sessions/nope/events")).status_code == 404
        assert (await http.get(f"{base}/sessions/sess_r/events?levels=loud")).status_code == 400
        assert (await http.get(f"{base}/nothing")).status_code == 404
        page = await http.get(f"http://127.0.0.1:{monitor_ws_server.port}/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert (await http.get(stream_url(monitor_ws_server).replace("ws:", "http:"))
                ).status_code == 426
