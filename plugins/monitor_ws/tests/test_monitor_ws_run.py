"""The transport end to end: real `sigil orchestrate --monitor` processes feeding one monitor."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).parent))
from monitor_ws_helpers import Client, free_port
from sigil_monitor_ws.transport import probe
from test_monitor_ws_security import raw_stalled_client

from sigil_core.testing import SigilCLI

TASK = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"


class MonitorEnv(SigilCLI):
    """The real ``sigil`` in a temporary home (:class:`~sigil_core.testing.SigilCLI`) with a
    free monitor port; kills any server it caused on teardown."""

    def __init__(self, tmp_path: Path) -> None:
        port = free_port()
        super().__init__(tmp_path, env={"SIGIL_MONITOR_PORT": str(port),
                                        "SIGIL_MONITOR_LINGER": "30"})
        self.port = port
        self.procs: list[subprocess.Popen] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/monitoring/v1"

    def orchestrate(self, session: str, *extra: str, env: dict | None = None) -> subprocess.Popen:
        return self.start("orchestrate", "--monitor", "--session", session, *extra, TASK, env=env)

    def serve(self, *extra: str) -> subprocess.Popen:
        proc = self.start("monitor", "serve", "--port", str(self.port), *extra)
        self.procs.append(proc)
        return proc

    def jsonl_ids(self, session: str) -> list[str]:
        return [e["id"] for e in self.session_jsonl(session)]

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        pid_file = self.home / f"monitor-{self.port}.pid"
        if pid_file.exists():  # the server our orchestrate spawned
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass


def hold_when(proc: subprocess.Popen, condition) -> None:
    """Step ``proc`` (SIGCONT, a moment, SIGSTOP) until ``condition()`` holds, and leave it
    stopped: a test then looks at "during the run" for as long as it needs, whatever the
    machine's load (SIGCONT lets it go on). Fails if the process ends first."""
    while True:
        proc.send_signal(signal.SIGSTOP)
        if condition() or proc.poll() is not None:
            break
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the moment the test waits for"


def open_operations(events: list[dict]) -> set[str]:
    """Operations of ``events`` that started and have not ended."""
    started = {e["operation_id"] for e in events if e["message"].startswith("Starting")}
    return started - {e["operation_id"] for e in events if e.get("duration_ms") is not None}


def events_so_far(path: Path) -> list[dict]:
    """The whole lines of a session file being written."""
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


@pytest.fixture
def monitor_ws_env(tmp_path):
    env = MonitorEnv(tmp_path)
    try:
        yield env
    finally:
        env.cleanup()


async def wait_health(env: MonitorEnv, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            try:
                return (await http.get(f"{env.base}/health")).json()
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    out, err = await asyncio.to_thread(proc.communicate, timeout=timeout)
    return proc.returncode, out, err


async def test_two_runs_feed_one_spawned_monitor_and_a_late_joiner_gets_history(monitor_ws_env):
    env = monitor_ws_env
    a = env.orchestrate("sess_mon_a")
    code, _, err = await finish(a)
    assert code == 0, err
    assert f"Monitor: ws://127.0.0.1:{env.port}/monitoring/v1/logs/stream" in err
    # A second and third run at once, now that a monitor is up: both feed the same server.
    b, c = env.orchestrate("sess_mon_b"), env.orchestrate("sess_mon_c")
    for proc in (b, c):
        code, _, err = await finish(proc)
        assert code == 0, err
    async with httpx.AsyncClient() as http:
        sessions = {s["session_id"]: s for s in
                    (await http.get(f"{env.base}/sessions")).json()["sessions"]}
        for sid in ("sess_mon_a", "sess_mon_b", "sess_mon_c"):
            assert sessions[sid]["events"] == len(env.jsonl_ids(sid))
            assert sessions[sid]["is_alive"] is False
            assert sessions[sid]["tokens_used"] > 0
            events = (await http.get(f"{env.base}/sessions/{sid}/events")).json()["events"]
            assert [e["id"] for e in events] == env.jsonl_ids(sid)
        health = (await http.get(f"{env.base}/health")).json()
    pid = int((env.home / f"monitor-{env.port}.pid").read_text())
    assert pid not in (a.pid, b.pid, c.pid)  # the server outlives the runs, in its own process
    for name in (f"monitor-{env.port}.pid", f"monitor-{env.port}.log"):
        mode = (env.home / name).stat().st_mode & 0o777
        assert mode == 0o600, (name, oct(mode))  # private whatever the umask
    assert health["sessions"] == 3
    # A client joining after the runs gets the session's whole history, in order.
    async with connect(f"ws://127.0.0.1:{env.port}/monitoring/v1/logs/stream"
                       "?session_id=sess_mon_b") as ws:
        client = Client(ws)
        await client.send({"type": "config", "filter": {"levels": ["trace", "debug", "info",
                                                                   "warning", "error",
                                                                   "critical"]}})
        ids = env.jsonl_ids("sess_mon_b")
        got = await client.entries_until(ids[-1])
        assert [e["id"] for e in got] == ids
        assert client.seen[0]["type"] == "heartbeat"


async def test_a_port_held_by_another_program_is_reported_and_the_run_goes_on(monitor_ws_env):
    env = monitor_ws_env

    async def not_a_monitor(reader, writer):
        await reader.read(1000)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        await writer.drain()
        writer.close()

    other = await asyncio.start_server(not_a_monitor, "127.0.0.1", env.port)
    try:
        assert await probe("127.0.0.1", env.port, None) == "other"
        code, _, err = await finish(env.orchestrate("sess_mon_busy"))
        assert code == 0, err
        assert f"Monitor disabled: port {env.port}" in err and "Traceback" not in err
        assert not (env.home / f"monitor-{env.port}.pid").exists()
    finally:
        other.close()
        await other.wait_closed()
    assert await probe("127.0.0.1", env.port, None) == "none"


async def test_a_spawned_monitor_exits_by_itself_when_idle(monitor_ws_env):
    env = monitor_ws_env
    code, _, err = await finish(env.orchestrate("sess_mon_idle", env={"SIGIL_MONITOR_LINGER": "1"}))
    assert code == 0, err
    pid_file = env.home / f"monitor-{env.port}.pid"
    deadline = time.monotonic() + 20
    while pid_file.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not pid_file.exists()  # it removes its pid file as it exits
    assert await probe("127.0.0.1", env.port, None) == "none"


async def test_100_readers_and_a_stalled_client_during_a_run(monitor_ws_env):
    env = monitor_ws_env
    env.serve("--no-follow")
    assert (await wait_health(env))["service"] == "sigil-monitor"
    url = f"ws://127.0.0.1:{env.port}/monitoring/v1/logs/stream?session_id=sess_mon_load"
    readers = [Client(await connect(url)) for _ in range(100)]
    for r in readers:
        await r.send({"type": "config", "filter": {"levels": ["debug", "info", "warning",
                                                              "error", "critical"]}})
    stalled = await raw_stalled_client(env.port)
    code, _, err = await finish(env.orchestrate(
        "sess_mon_load", env={"SIGIL_OFFLINE_LATENCY_MS": "20"}))
    assert code == 0, err
    ids = [i for i in env.jsonl_ids("sess_mon_load")]
    with open(env.cwd / "outputs" / "sessions" / "sess_mon_load.jsonl") as fh:  # noqa: ASYNC230 - test helper
        levels = {json.loads(line)["id"]: json.loads(line)["level"] for line in fh}
    wanted = [i for i in ids if levels[i] != "trace"]
    results = await asyncio.gather(*(r.entries_until(wanted[-1], timeout=30) for r in readers))
    for got in results:
        assert [e["id"] for e in got] == wanted
    # The stalled client is dropped (waited for generously: a loaded machine is slow, not
    # wrong), while every reader got every event above.
    deadline = time.monotonic() + 120
    async with httpx.AsyncClient() as http:
        while (health := (await http.get(f"{env.base}/health")).json())["dropped_clients"] < 1:
            assert time.monotonic() < deadline, f"the stalled client was never dropped: {health}"
            await asyncio.sleep(0.1)
        assert health["clients"] == 100
    for r in readers:
        await r.ws.close()
    stalled.close()
