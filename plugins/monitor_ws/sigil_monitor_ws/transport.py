"""The monitor transport ``sigil orchestrate --monitor`` starts: it feeds a monitor server.

Design (see README): the server always lives in its own process. The transport looks at the
configured port:

* a Sigil monitor answers there -> forward this run's events to it over ``/monitoring/v1/ingest``;
* nothing listens there -> spawn ``sigil monitor serve`` detached (it exits by itself after a
  quiet period) and forward to it once it is up;
* another program holds the port -> say so in one line and run unmonitored (never crash).

So any number of orchestrate processes feed one monitor, clients survive the end of a run and
late joiners get history, and the fan-out to 100 clients costs the run nothing: it happens on
another core, in another process. The run only hands batches to a bounded deque (``publish``
never blocks); a background task ships them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .server import INGEST_PATH, SERVICE, STREAM_PATH, MonitorConfigError, is_loopback

#: Events kept to resend when the connection to the server is re-established.
KEEP_EVENTS = 10_000
BATCH_EVENTS = 500


async def probe(host: str, port: int, token: str | None, timeout: float = 1.0) -> str:
    """What listens on host:port: ``"sigil"`` (a monitor), ``"other"`` or ``"none"``."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError):
        return "none"
    try:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        writer.write(f"GET /monitoring/v1/health HTTP/1.1\r\nHost: {_host_port(host, port)}\r\n"
                     f"{auth}Connection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(65536), timeout)
    except (TimeoutError, OSError):
        return "other"
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if f"Server: {SERVICE}".encode() in head:
        return "sigil"
    try:
        return "sigil" if json.loads(body).get("service") == SERVICE else "other"
    except (ValueError, AttributeError):
        return "other"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


#: The ``monitor_ws`` section's keys and their types (checked: a typo or a wrong type is an
#: error naming the key, never a traceback or a silently ignored setting).
SECTION_KEYS: dict[str, tuple[type, ...]] = {
    "host": (str,), "port": (int,), "token": (str,), "linger_seconds": (int, float),
    "allowed_origins": (list,), "max_streams": (int,), "idle_timeout_seconds": (int, float),
}


def _checked_section(section: Any) -> dict[str, Any]:
    import difflib
    import math

    if section is None:
        return {}
    if not isinstance(section, dict):
        raise MonitorConfigError(f"monitor_ws: expected a mapping of settings, got "
                                 f"{type(section).__name__}")
    for key, value in section.items():
        if key not in SECTION_KEYS:
            close = difflib.get_close_matches(str(key), list(SECTION_KEYS), n=1)
            raise MonitorConfigError(
                f"monitor_ws.{key}: unknown setting" + (f"; did you mean '{close[0]}'?" if close
                else f"; known: {', '.join(SECTION_KEYS)}"))
        if value is None:
            continue
        types = SECTION_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, types):
            want = " or ".join("number" if t is float else {int: "whole number", str: "string",
                                                          list: "list"}[t] for t in types)
            raise MonitorConfigError(f"monitor_ws.{key}: expected a {want}, got {value!r}")
        if isinstance(value, (int, float)) and not (math.isfinite(value) and value >= 0):
            raise MonitorConfigError(f"monitor_ws.{key}: {value!r} must be 0 or more")
        if isinstance(value, list) and not all(isinstance(o, str) for o in value):
            raise MonitorConfigError(f"monitor_ws.{key}: expected a list of strings")
    return section


def _env_number(name: str, value: str) -> float:
    import math

    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise MonitorConfigError(f"environment variable {name}={value!r} must be a number of "
                                 "seconds, 0 or more")
    return number


def settings_from_config(config: Any) -> dict[str, Any]:
    """Monitor settings from the core config (cli.monitor) and the ``monitor_ws`` section.

    Precedence as everywhere in Sigil: environment variable > config file > default. The core
    already applied SIGIL_MONITOR_PORT to ``cli.monitor.port``. Raises MonitorConfigError
    naming the key for an unknown setting or a wrong type.
    """
    section = _checked_section(config.section("monitor_ws") if config is not None else {})
    monitor = getattr(getattr(config, "cli", None), "monitor", None)
    host = os.environ.get("SIGIL_MONITOR_HOST") or section.get("host") or \
        getattr(monitor, "host", None) or "127.0.0.1"
    port = getattr(monitor, "port", None)
    if port is None:
        port = section.get("port") or 8000
    env_linger = os.environ.get("SIGIL_MONITOR_LINGER")
    linger = (_env_number("SIGIL_MONITOR_LINGER", env_linger) if env_linger
              else section.get("linger_seconds") or 300)
    max_streams = section.get("max_streams")
    max_streams = 200 if max_streams is None else max_streams
    if max_streams < 1:
        raise MonitorConfigError("monitor_ws.max_streams: must be at least 1")
    return {
        "host": host,
        "port": int(port),
        "token": os.environ.get("SIGIL_MONITOR_TOKEN") or section.get("token") or None,
        "linger": float(linger),
        "allowed_origins": list(section.get("allowed_origins") or []),
        "max_streams": int(max_streams),
        "idle_timeout": float(section.get("idle_timeout_seconds") or 300),
    }


class WebSocketMonitorTransport:
    """Forwards a run's events to the (possibly freshly spawned) monitor server."""

    name = "websocket"

    def __init__(self) -> None:
        self._kept: deque[dict[str, Any]] = deque(maxlen=KEEP_EVENTS)
        self._total = 0  # events ever published; the absolute index of the next one
        self._sent = 0  # absolute index of the first event not yet sent
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.session_id: str | None = None
        self.settings: dict[str, Any] = {}
        self.disabled: str | None = None
        self.connected = False
        self._ever_connected = False

    # ------------------------------------------------------------------ protocol
    def bind(self, run: Any) -> WebSocketMonitorTransport:
        """A fresh transport per run: one process may run many monitored sessions at once."""
        return WebSocketMonitorTransport()

    async def start(self, run: Any) -> str | None:
        self._run = run
        self.settings = s = settings_from_config(getattr(run, "config", None))
        self.session_id = getattr(run, "session_id", None)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        connect_host = "127.0.0.1" if s["host"] in ("0.0.0.0", "", "::") else s["host"]
        self._connect_host = connect_host
        config = getattr(run, "config", None)
        self._home = Path(getattr(config, "home", None) or os.environ.get("SIGIL_HOME")
                          or Path.home() / ".sigil")
        self._follow = (Path(getattr(config, "outputs_dir", "outputs")) / "sessions").resolve()
        state = await probe(connect_host, s["port"], s["token"])
        if state == "other":
            self.disabled = "port in use"
            return (f"Monitor disabled: port {s['port']} on {s['host']} is used by another "
                    "program; set SIGIL_MONITOR_PORT or cli.monitor.port to a free port")
        if state == "none":
            if not is_loopback(s["host"]) and not s["token"]:
                self.disabled = "no token"
                return (f"Monitor disabled: binding {s['host']} needs a token "
                        "(SIGIL_MONITOR_TOKEN or monitor_ws.token)")
            self._spawn()
        self._task = asyncio.create_task(self._forward())
        shown = _host_port(connect_host, s["port"])
        return (f"Monitor: ws://{shown}{STREAM_PATH} (dashboard http://{shown}/, "
                "or run: sigil monitor; stop the server: sigil monitor stop)")

    def publish(self, events: Sequence[Any]) -> None:
        if self.disabled or self._loop is None:
            return
        dicts = [ev.to_dict() if hasattr(ev, "to_dict") else ev for ev in events]
        if threading.get_ident() == self._loop_thread:
            self._take(dicts)
        else:
            self._loop.call_soon_threadsafe(self._take, dicts)

    async def stop(self) -> None:
        if self._task is None:
            return
        # The core stops transports before its last buffer flush; take those events now so
        # the monitor sees the run's final events.
        bus = getattr(getattr(self, "_run", None), "bus", None)
        if bus is not None and hasattr(bus, "flush"):
            bus.flush()
        self._closing = True
        assert self._wake is not None
        self._wake.set()
        try:
            # Enough for a server spawned a moment ago to come up and take the last events.
            await asyncio.wait_for(asyncio.shield(self._task), 5.0)
        except (TimeoutError, Exception):  # noqa: BLE001 - monitoring is best effort
            self._task.cancel()

    # ------------------------------------------------------------------ internals
    def _take(self, dicts: list[dict[str, Any]]) -> None:
        self._kept.extend(dicts)
        self._total += len(dicts)
        assert self._wake is not None
        self._wake.set()

    def _spawn(self) -> None:
        """Start ``sigil monitor serve`` detached; if another process wins the port, fine."""
        s = self.settings
        from sigil_core import private_mkdir, private_opener

        home = private_mkdir(self._home)
        cmd = [sys.executable, "-m", "sigil_monitor_ws", "serve", "--host", s["host"],
               "--port", str(s["port"]), "--exit-when-idle", str(s["linger"]),
               "--pid-file", str(home / f"monitor-{s['port']}.pid"),
               "--follow", str(self._follow)]
        # The log holds what clients and runs sent: private, like every file under SIGIL_HOME.
        log = open(home / f"monitor-{s['port']}.log", "ab",  # noqa: SIM115 - for the child
                   opener=private_opener)
        try:
            subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True, close_fds=True)
        finally:
            log.close()

    async def _forward(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        s = self.settings
        url = f"ws://{_host_port(self._connect_host, s['port'])}{INGEST_PATH}"
        headers = {"Authorization": f"Bearer {s['token']}"} if s["token"] else None
        delay = 0.05
        give_up_at: float | None = None
        started = time.monotonic()
        while True:
            try:
                async with connect(url, additional_headers=headers, open_timeout=2,
                                   max_size=2**20, compression=None, close_timeout=1) as ws:
                    self.connected, self._ever_connected, delay = True, True, 0.05
                    # Resend what we still hold: the server drops duplicates by event id.
                    self._sent = self._total - len(self._kept)
                    await self._pump(ws)
                    return
            except (TimeoutError, OSError, ConnectionClosed, InvalidHandshake):
                self.connected = False
            if self._closing:
                give_up_at = give_up_at or time.monotonic() + 4.0
                if time.monotonic() > give_up_at:
                    return
            elif (self._ever_connected or time.monotonic() - started > 5.0) and await probe(
                    self._connect_host, s["port"], s["token"], 0.5) == "none":
                # The server went away mid-run (killed, or it was idle-exiting): bring one up.
                # (Not while a server we spawned is still starting: python takes a while.)
                self._ever_connected, started = False, time.monotonic()
                try:
                    self._spawn()
                except OSError:
                    pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _pump(self, ws: Any) -> None:
        assert self._wake is not None
        while True:
            while self._sent < self._total:
                start = max(self._sent, self._total - len(self._kept))
                offset = start - (self._total - len(self._kept))
                batch = [self._kept[i] for i in
                         range(offset, min(offset + BATCH_EVENTS, len(self._kept)))]
                await ws.send(json.dumps({"type": "publish", "events": batch}, default=str))
                self._sent = start + len(batch)
            if self._closing:
                await ws.send(json.dumps({"type": "session_end", "session_id": self.session_id}))
                try:  # wait for the ack so the end is recorded before this process exits
                    await asyncio.wait_for(ws.recv(), 2)
                except (TimeoutError, Exception):  # noqa: BLE001, S110
                    pass
                return
            self._wake.clear()
            await self._wake.wait()
