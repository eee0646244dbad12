"""The monitor server: one port for the WebSocket stream, the publisher feed, the REST reads
and the browser dashboard (websockets' ``process_request`` answers plain HTTP GETs).

Endpoints (all under one host:port):

* ``ws  /monitoring/v1/logs/stream``  clients (monitor.py, the dashboard); protocol of DESIGN §6
* ``ws  /monitoring/v1/ingest``       ``sigil orchestrate --monitor`` processes publish here
* ``GET /monitoring/v1/health``, ``/monitoring/v1/sessions``, ``/monitoring/v1/sessions/<id>``,
  ``/monitoring/v1/sessions/<id>/events``
* ``GET /`` (and ``/monitoring/v1/dashboard``) the static dashboard page
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import ipaddress
import json
import os
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .hub import Filter, Hub, ProtocolError, Subscriber, error_message

STREAM_PATH = "/monitoring/v1/logs/stream"
INGEST_PATH = "/monitoring/v1/ingest"
API = "/monitoring/v1"
SERVICE = "sigil-monitor"


class MonitorConfigError(ValueError):
    """The server cannot start with these settings (bad input: exit code 2)."""


class PortInUseError(OSError):
    """Something already listens on the port."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"port {port} on {host} is already in use")
        self.host, self.port = host, port


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServerSettings:
    """Everything a monitor server needs; built from config, env and flags by the callers."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    allowed_origins: list[str] = field(default_factory=list)
    max_streams: int = 200
    max_publishers: int = 100
    max_message_bytes: int = 2**20
    idle_timeout: float = 300.0
    #: A client whose send has been pending, or whose ping has gone unanswered, this long is
    #: dropped. Kept well under the 5 s the issue allows.
    stall_timeout: float = 2.5
    ping_interval: float = 1.0
    queue_max: int = 256
    history_limit: int = 10_000
    default_budget: int = 256_000
    #: Exit after this long with no publisher, no client and no live session (spawned servers).
    exit_when_idle: float | None = None
    follow_dir: Path | None = None
    follow_recent: int = 20
    #: Seconds between heartbeats to a client that has not asked for its own interval
    #: (``logging.stream.heartbeat_interval_ms`` of the config).
    heartbeat_interval: float = 5.0

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise MonitorConfigError(f"monitor port {self.port} is not a port number")
        if not is_loopback(self.host) and not self.token:
            raise MonitorConfigError(
                f"refusing to bind {self.host}: a non-loopback monitor needs a token; set "
                "SIGIL_MONITOR_TOKEN, monitor_ws.token in config.yaml or --token")
        if self.max_streams < 1:
            raise MonitorConfigError("monitor_ws.max_streams must be at least 1")


class MonitorServer:
    """A running monitor server (see the module docstring for its endpoints)."""

    def __init__(self, settings: ServerSettings, hub: Hub | None = None) -> None:
        settings.validate()
        self.settings = settings
        self.hub = hub or Hub(history_limit=settings.history_limit,
                              default_budget=settings.default_budget)
        self.port = settings.port
        self.publishers = 0
        self.dropped_clients = 0
        self._server: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopped = asyncio.Event()
        self._streams: set[Any] = set()
        self._dashboard: str | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> MonitorServer:
        from websockets.asyncio.server import serve

        s = self.settings
        try:
            self._server = await serve(
                self._handle, s.host, s.port, process_request=self._process_request,
                max_size=s.max_message_bytes, ping_interval=None, close_timeout=1,
                compression=None, server_header=f"{SERVICE}", logger=_quiet_logger(),
            )
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES) or "address already in use" in str(
                    exc).lower():
                raise PortInUseError(s.host, s.port) from None
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks.append(asyncio.create_task(self._watchdog()))
        if s.follow_dir is not None:
            from .follow import SessionFileFollower

            follower = SessionFileFollower(s.follow_dir, recent=s.follow_recent)
            self._tasks.append(asyncio.create_task(follower.run_into(self.hub)))
        return self

    @property
    def url(self) -> str:
        host = self.settings.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
        return f"ws://{shown}:{self.port}{STREAM_PATH}"

    @property
    def http_url(self) -> str:
        return self.url.replace("ws://", "http://", 1).replace(STREAM_PATH, "/")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.hub.flush_all()
        # Give clients a moment to receive their last flush; never wait on a stalled one.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and any(
                not s.queue.empty() for s in self.hub.subscribers):
            await asyncio.sleep(0.02)
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 3)
            except TimeoutError:
                pass
        self._stopped.set()

    async def serve_until_stopped(self) -> None:
        await self._stopped.wait()

    # ------------------------------------------------------------------ HTTP side
    def _allowed_origins(self) -> set[str]:
        port = self.port
        names = {"localhost", "127.0.0.1", "[::1]"}
        if not is_loopback(self.settings.host) and self.settings.host not in ("0.0.0.0", "::"):
            names.add(self.settings.host)
        origins = {f"{scheme}://{n}:{port}" for n in names for scheme in ("http", "https")}
        return origins | set(self.settings.allowed_origins)

    def _host_ok(self, host_header: str | None) -> bool:
        # DNS-rebinding defence for the unauthenticated loopback server: a page from another
        # site that resolves to 127.0.0.1 still sends its own name in Host.
        if self.settings.token or not host_header:
            return True
        name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        return is_loopback(name.strip("[]")) or name == self.settings.host

    def _token_ok(self, request: Any, query: dict[str, list[str]]) -> bool:
        token = self.settings.token
        if not token:
            return True
        given = (query.get("token") or [""])[0]
        auth = request.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), token.encode())

    def _process_request(self, conn: Any, request: Any) -> Any:
        parts = urlsplit(request.path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query)
        origin = request.headers.get("Origin")
        if not self._host_ok(request.headers.get("Host")):
            return _json(conn, HTTPStatus.FORBIDDEN, {"error": "Host header not allowed"})
        if origin is not None and origin not in self._allowed_origins():
            return _json(conn, HTTPStatus.FORBIDDEN, {"error": f"origin {origin} not allowed"})
        if not self._token_ok(request, query):
            return _json(conn, HTTPStatus.UNAUTHORIZED,
                         {"error": "missing or wrong token (Authorization: Bearer or ?token=)"})
        upgrade = "websocket" in (request.headers.get("Upgrade") or "").lower()
        if path == STREAM_PATH:
            if not upgrade:
                return _json(conn, HTTPStatus.UPGRADE_REQUIRED,
                             {"error": "this endpoint is a WebSocket stream"})
            if len(self._streams) >= self.settings.max_streams:
                return _json(conn, HTTPStatus.SERVICE_UNAVAILABLE,
                             {"error": f"too many streams (limit {self.settings.max_streams})"})
            return None
        if path == INGEST_PATH:
            if origin is not None:  # publishers are sigil processes, never browser pages
                return _json(conn, HTTPStatus.FORBIDDEN, {"error": "browsers cannot publish"})
            if not upgrade:
                return _json(conn, HTTPStatus.UPGRADE_REQUIRED,
                             {"error": "this endpoint is a WebSocket feed"})
            if self.publishers >= self.settings.max_publishers:
                return _json(conn, HTTPStatus.SERVICE_UNAVAILABLE, {"error": "too many publishers"})
            return None
        return self._rest(conn, path, query)

    def _rest(self, conn: Any, path: str, query: dict[str, list[str]]) -> Any:
        if path in ("/", f"{API}/dashboard"):
            return _respond(conn, HTTPStatus.OK, self._dashboard_html(),
                            "text/html; charset=utf-8")
        if path == f"{API}/health":
            body = self.hub.health() | {"publishers": self.publishers,
                                        "dropped_clients": self.dropped_clients}
            return _json(conn, HTTPStatus.OK, body)
        if path == f"{API}/sessions":
            sessions = [s.summary() for s in reversed(self.hub.sessions.values())]
            return _json(conn, HTTPStatus.OK, {"sessions": sessions})
        if path.startswith(f"{API}/sessions/"):
            rest = path[len(f"{API}/sessions/"):].split("/")
            state = self.hub.sessions.get(rest[0])
            if state is None:
                return _json(conn, HTTPStatus.NOT_FOUND, {"error": f"no session {rest[0]!r}"})
            if len(rest) == 1:
                return _json(conn, HTTPStatus.OK, state.summary())
            if rest[1:] == ["events"]:
                try:
                    filt = Filter(session_id=rest[0]).merged(
                        {k: v[0] for k, v in query.items() if k in ("levels", "components")})
                    limit = int(query["limit"][0]) if "limit" in query else None
                except (ProtocolError, ValueError) as exc:
                    return _json(conn, HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                events = self.hub.session_events(rest[0], filt, limit)
                return _json(conn, HTTPStatus.OK, {"session_id": rest[0], "events": events})
        return _json(conn, HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {path}"})

    def _dashboard_html(self) -> str:
        if self._dashboard is None:
            self._dashboard = resources.files("sigil_monitor_ws").joinpath(
                "dashboard.html").read_text(encoding="utf-8")
        return self._dashboard

    # ------------------------------------------------------------------ WebSocket side
    async def _handle(self, ws: Any) -> None:
        path = urlsplit(ws.request.path).path.rstrip("/")
        if path == INGEST_PATH:
            await self._ingest(ws)
        else:
            await self._stream(ws)

    async def _stream(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        query = parse_qs(urlsplit(ws.request.path).query)
        try:
            filt = Filter().merged({k: v[0] for k, v in query.items()
                                    if k in ("session_id", "components", "levels",
                                             "correlation_id", "operation_id")})
        except ProtocolError as exc:
            await ws.send(error_message(str(exc)))
            await ws.close(1008, "bad filter")
            return

        def drop(reason: str) -> None:
            self.dropped_clients += 1
            if reason == "idle":
                asyncio.get_running_loop().create_task(_close_idle(ws))
            else:
                ws.transport.abort()  # no closing handshake: the peer is not reading

        sub = Subscriber(self.hub, ws.send, drop, filt, queue_max=self.settings.queue_max)
        sub.heartbeat_interval = self.settings.heartbeat_interval
        self._streams.add(ws)
        self.hub.add(sub)
        pinger = asyncio.create_task(self._ping_loop(ws, sub))
        try:
            sub.heartbeat()
            try:  # a client's config (monitor.py sends one at once) shapes its history replay
                first = await asyncio.wait_for(ws.recv(), 0.25)
            except TimeoutError:
                first = None
            if first is not None:
                self._on_client_message(sub, first)
            self.hub.go_live(sub)
            errors = 0
            async for message in ws:
                errors = 0 if self._on_client_message(sub, message) else errors + 1
                if errors >= 50:  # a client stuck in a loop of bad messages
                    await ws.close(1008, "too many malformed messages")
                    break
        except ConnectionClosed:
            pass
        finally:
            pinger.cancel()
            self.hub.remove(sub)
            self._streams.discard(ws)

    def _on_client_message(self, sub: Subscriber, raw: str | bytes) -> bool:
        """Apply one client message; on a bad one send an error and keep the connection."""
        sub.last_activity = time.monotonic()
        try:
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise ProtocolError("message is not valid JSON") from None
            if not isinstance(data, dict):
                raise ProtocolError("message must be a JSON object with a 'type'")
            kind = data.get("type")
            if kind == "config":
                self._configure(sub, data)
            elif kind == "update_filter":
                if "filter" not in data:
                    raise ProtocolError("update_filter needs a 'filter' object")
                sub.flush()
                sub.filter = sub.filter.merged(data["filter"])
            elif kind == "pause":
                sub.pause()
            elif kind == "resume":
                sub.resume()
            else:
                raise ProtocolError(
                    f"unknown message type {kind!r}; use config, update_filter, pause, resume")
        except ProtocolError as exc:
            sub.enqueue(error_message(str(exc)))
            return False
        return True

    def _configure(self, sub: Subscriber, data: dict[str, Any]) -> None:
        new_filter = sub.filter.merged(data["filter"]) if "filter" in data else sub.filter
        limits = {"buffer_size": (1, 1000), "flush_interval_ms": (10, 60_000),
                  "heartbeat_interval_ms": (100, 600_000)}
        values: dict[str, int] = {}
        for key, (low, high) in limits.items():
            if key in data:
                value = data[key]
                if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                    raise ProtocolError(f"{key} must be a whole number from {low} to {high}")
                values[key] = value
        sub.flush()
        sub.filter = new_filter
        if "buffer_size" in values:
            sub.buffer_size = values["buffer_size"]
        if "flush_interval_ms" in values:
            sub.flush_interval = values["flush_interval_ms"] / 1000
        if "heartbeat_interval_ms" in values:
            sub.heartbeat_interval = values["heartbeat_interval_ms"] / 1000
            sub.restart_heartbeats()

    async def _ping_loop(self, ws: Any, sub: Subscriber) -> None:
        """Our own keepalive: a peer that answers no ping within stall_timeout is dropped.

        The library's keepalive is off: its ping waits behind a full write buffer, which is
        exactly the stalled client we need to notice.
        """
        timeout = self.settings.stall_timeout
        try:
            while True:
                await asyncio.sleep(self.settings.ping_interval)
                try:
                    waiter = await asyncio.wait_for(ws.ping(), timeout)
                    await asyncio.wait_for(waiter, timeout)
                except TimeoutError:
                    sub.drop("no answer to ping")
                    return
        except Exception:  # noqa: BLE001 - connection gone: the handler cleans up
            return

    async def _ingest(self, ws: Any) -> None:
        """Events from ``sigil orchestrate --monitor`` processes."""
        from websockets.exceptions import ConnectionClosed

        self.publishers += 1
        sessions: set[str] = set()
        try:
            async for raw in ws:
                try:
                    data = json.loads(raw)
                    kind = data.get("type")
                except (ValueError, AttributeError):
                    await ws.send(error_message("message is not a JSON object"))
                    continue
                if kind == "publish" and isinstance(data.get("events"), list):
                    for ev in data["events"]:
                        if isinstance(ev, dict) and isinstance(ev.get("session_id"), str):
                            sessions.add(ev["session_id"])
                    self.hub.publish(data["events"])
                elif kind == "session_end" and isinstance(data.get("session_id"), str):
                    self.hub.publish(data.get("events") or [])
                    self.hub.end_session(data["session_id"])
                    sessions.discard(data["session_id"])
                    self.hub.flush_all()
                    await ws.send(json.dumps({"type": "ack", "session_id": data["session_id"]}))
                elif kind == "hello":
                    await ws.send(json.dumps({"type": "welcome", "service": SERVICE}))
                else:
                    await ws.send(error_message(f"unknown publisher message {kind!r}"))
        except ConnectionClosed:
            pass
        finally:
            self.publishers -= 1

    async def _watchdog(self) -> None:
        s = self.settings
        last_busy = time.monotonic()
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for sub in list(self.hub.subscribers):
                if sub.sending_since is not None and now - sub.sending_since > s.stall_timeout:
                    sub.drop("client is not reading: a send is stuck")
                elif now - sub.last_activity > s.idle_timeout:
                    sub.drop("idle")
            if s.exit_when_idle is None:
                continue
            if self._streams or self.publishers or any(
                    st.is_alive for st in self.hub.sessions.values()):
                last_busy = now
            if now - max(last_busy, self.hub.last_activity) > s.exit_when_idle:
                asyncio.get_running_loop().create_task(self.stop())
                return


async def _close_idle(ws: Any) -> None:
    try:
        await asyncio.wait_for(ws.send(error_message("idle timeout: closing the stream")), 1)
        await ws.close(1001, "idle timeout")
    except Exception:  # noqa: BLE001 - the peer may be gone already
        ws.transport.abort()


def _respond(conn: Any, status: HTTPStatus, body: str, content_type: str) -> Any:
    response = conn.respond(status, body)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type
    response.headers["Cache-Control"] = "no-store"
    return response


def _json(conn: Any, status: HTTPStatus, body: Any) -> Any:
    return _respond(conn, status, json.dumps(body, default=str), "application/json")


def _quiet_logger() -> Any:
    import logging

    logger = logging.getLogger("sigil_monitor_ws.websockets")
    if os.environ.get("SIGIL_MONITOR_DEBUG"):
        logger.setLevel(logging.DEBUG)
    else:
        logger.setLevel(logging.CRITICAL)  # handshake noise from refused requests
    return logger
