"""The fan-out core of the monitor: sessions, their history, and the subscribed clients.

Transport-agnostic and single-threaded: everything runs on one asyncio loop, so taking a
history snapshot and switching a client to live delivery happen with no await in between —
a late joiner gets every event exactly once (history first, then live).

Each event is JSON-encoded once, when it arrives; messages to clients are built by joining the
pre-encoded fragments, so 100 clients cost 100 string joins, not 100 encodings per event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sigil_core import LEVELS

FILTER_KEYS = ("session_id", "correlation_id", "operation_id", "components", "levels")
#: Client-side limit of the websockets library (and of the original API) is 1 MB per message;
#: we split outgoing messages well below it.
MAX_MESSAGE_BYTES = 512 * 1024
#: A history replay or resume backlog is sent in chunks of at most this many entries.
CHUNK_ENTRIES = 500


class ProtocolError(ValueError):
    """A client sent something the protocol does not allow; the text goes back as an error."""


def now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _as_names(value: Any, key: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(f"filter.{key} must be a list of strings or a comma-separated string")
    names = frozenset(v.strip().lower() for v in value)
    if key == "levels":
        unknown = sorted(names - set(LEVELS))
        if unknown:
            raise ProtocolError(
                f"filter.levels: unknown level {unknown[0]!r}; use {', '.join(LEVELS)}")
    return names or None


class Filter:
    """Which entries a client wants. Every set field must match; unset fields match anything."""

    __slots__ = FILTER_KEYS

    def __init__(self, session_id: str | None = None, correlation_id: str | None = None,
                 operation_id: str | None = None, components: frozenset[str] | None = None,
                 levels: frozenset[str] | None = None) -> None:
        self.session_id = session_id
        self.correlation_id = correlation_id
        self.operation_id = operation_id
        self.components = components
        self.levels = levels

    def merged(self, data: Any) -> Filter:
        """A copy with the keys named in ``data`` replaced (``null`` clears a key).

        Merging, not replacing, is what the spec's monitor.py needs: it passes the component
        filter as a query parameter and then sends a config whose filter only names levels.
        """
        if not isinstance(data, dict):
            raise ProtocolError("filter must be a JSON object")
        unknown = sorted(set(data) - set(FILTER_KEYS))
        if unknown:
            raise ProtocolError(
                f"filter: unknown key {unknown[0]!r}; use {', '.join(FILTER_KEYS)}")
        new = Filter(**{k: getattr(self, k) for k in FILTER_KEYS})
        for key in ("session_id", "correlation_id", "operation_id"):
            if key in data:
                value = data[key]
                if value is not None and not isinstance(value, str):
                    raise ProtocolError(f"filter.{key} must be a string or null")
                setattr(new, key, value or None)
        for key in ("components", "levels"):
            if key in data:
                setattr(new, key, _as_names(data[key], key))
        return new

    def matches(self, ev: dict[str, Any]) -> bool:
        if self.session_id is not None and ev.get("session_id") != self.session_id:
            return False
        if self.levels is not None and ev.get("level") not in self.levels:
            return False
        if self.components is not None and ev.get("component") not in self.components:
            return False
        if self.correlation_id is not None and ev.get("correlation_id") != self.correlation_id:
            return False
        return not (self.operation_id is not None and self.operation_id not in (ev.get("operation_id"), ev.get("parent_operation_id")))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in FILTER_KEYS:
            value = getattr(self, key)
            if value is not None:
                out[key] = sorted(value) if isinstance(value, frozenset) else value
        return out


class SessionState:
    """What the monitor knows about one session: its history and its live status."""

    def __init__(self, session_id: str, history_limit: int, default_budget: int) -> None:
        self.session_id = session_id
        self.history: deque[tuple[dict[str, Any], str]] = deque()
        self.ids: set[str] = set()
        self.history_limit = history_limit
        self.events = 0
        self.is_alive = True
        self.first_timestamp: str | None = None
        self.last_timestamp: str | None = None
        self.last_activity = time.monotonic()
        self.current_operation: str | None = None
        self.current_component: str | None = None
        self.tokens_used = 0
        self.budget_remaining = default_budget
        self.total_budget = default_budget
        self.errors = 0
        self.task: str | None = None
        # operation_id -> (operation, component) of operations started and not yet finished,
        # in start order: the newest open one is "the current operation".
        self.open_ops: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()

    def add(self, ev: dict[str, Any], frag: str) -> bool:
        """Record an event; False when it was already seen (the same event from two feeds)."""
        ev_id = ev.get("id")
        if ev_id is not None:
            if ev_id in self.ids:
                return False
            self.ids.add(ev_id)
        self.history.append((ev, frag))
        if len(self.history) > self.history_limit:
            old, _ = self.history.popleft()
            self.ids.discard(old.get("id"))
        self.events += 1
        self.last_activity = time.monotonic()
        ts = ev.get("timestamp")
        if ts:
            self.first_timestamp = self.first_timestamp or ts
            self.last_timestamp = ts
        self._track(ev)
        return True

    def _track(self, ev: dict[str, Any]) -> None:
        snap = ev.get("budget_snapshot")
        if isinstance(snap, dict):
            self.tokens_used = int(snap.get("used", self.tokens_used) or 0)
            self.budget_remaining = int(snap.get("remaining", self.budget_remaining) or 0)
            self.total_budget = int(snap.get("total_budget", self.total_budget) or 0)
        if ev.get("level") in ("error", "critical"):
            self.errors += 1
        meta = ev.get("metadata")
        if self.task is None and isinstance(meta, dict) and isinstance(meta.get("task"), str):
            self.task = meta["task"]
        op_id, message = ev.get("operation_id"), ev.get("message") or ""
        operation, component = ev.get("operation"), ev.get("component")
        if op_id and message.startswith("Starting "):
            self.open_ops[op_id] = (operation, component)
        elif op_id and op_id in self.open_ops and (
                ev.get("duration_ms") is not None or message.startswith(("Completed ", "Failed "))):
            del self.open_ops[op_id]
        if self.open_ops:
            self.current_operation, self.current_component = next(reversed(self.open_ops.values()))
        elif operation:
            self.current_operation, self.current_component = operation, component

    def summary(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "is_alive": self.is_alive,
            "task": self.task,
            "events": self.events,
            "errors": self.errors,
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
            "current_operation": self.current_operation,
            "current_component": self.current_component,
            "tokens_used": self.tokens_used,
            "budget_remaining": self.budget_remaining,
            "total_budget": self.total_budget,
        }


SendFn = Callable[[str], Awaitable[None]]


class Subscriber:
    """One streaming client: its filter, its buffer, its bounded outgoing queue.

    The hub never awaits a client: entries go into the buffer, flushes put finished messages
    on a bounded queue, and a sender task per client drains it. A client whose queue overflows
    is dropped (``on_drop``), so one slow reader never holds up the run or the others.
    """

    def __init__(self, hub: Hub, send: SendFn, on_drop: Callable[[str], None],
                 filt: Filter | None = None, *, queue_max: int = 256,
                 pause_limit: int = 10_000) -> None:
        self.hub = hub
        self._send = send
        self._on_drop = on_drop
        self.filter = filt or Filter()
        self.buffer_size = 100
        self.flush_interval = 0.1
        self.heartbeat_interval = 5.0
        self.paused = False
        self.live = False
        self.closed = False
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_max)
        self.buffer: list[str] = []
        self.backlog: deque[str] = deque(maxlen=pause_limit)
        self.backlog_dropped = 0
        self.logs_since_heartbeat = 0
        self.sending_since: float | None = None
        self.last_activity = time.monotonic()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._sender()), asyncio.create_task(self._beats())]

    def close(self) -> None:
        self.closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        for task in self._tasks:
            task.cancel()

    def drop(self, reason: str) -> None:
        if self.closed:
            return
        self.hub.remove(self)
        self._on_drop(reason)

    def restart_heartbeats(self) -> None:
        if len(self._tasks) == 2:
            self._tasks[1].cancel()
            self._tasks[1] = asyncio.create_task(self._beats())

    # ------------------------------------------------------------------ entries
    def offer(self, frag: str, level: str | None) -> None:
        """An entry that matched the filter (called synchronously by the hub)."""
        self.logs_since_heartbeat += 1
        if self.paused:
            if len(self.backlog) == self.backlog.maxlen:
                self.backlog_dropped += 1
            self.backlog.append(frag)
            return
        self.buffer.append(frag)
        if level in ("error", "critical") or len(self.buffer) >= self.buffer_size:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(
                self.flush_interval, self.flush)

    def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self.buffer and not self.closed:
            entries, self.buffer = self.buffer, []
            self.last_activity = time.monotonic()
            self.send_entries("log", entries)

    def pause(self) -> None:
        self.flush()
        self.paused = True

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        if self.backlog_dropped:
            self.enqueue(error_message(
                f"{self.backlog_dropped} entries were dropped while paused (limit "
                f"{self.backlog.maxlen}); the rest follow"))
            self.backlog_dropped = 0
        if self.backlog:
            entries = list(self.backlog)
            self.backlog.clear()
            self.send_entries("buffer_flush", entries)

    # ------------------------------------------------------------------ sending
    def send_entries(self, kind: str, entries: list[str]) -> None:
        for message in build_messages(kind, entries):
            if not self.enqueue(message):
                return

    def enqueue(self, message: str) -> bool:
        if self.closed:
            return False
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.drop("client is not reading: its outgoing queue is full")
            return False
        return True

    def heartbeat(self) -> None:
        beat = self.hub.heartbeat_for(self)
        self.logs_since_heartbeat = 0
        self.enqueue(json.dumps({"type": "heartbeat", "timestamp": now_iso(), "heartbeat": beat}))

    async def _sender(self) -> None:
        while True:
            message = await self.queue.get()
            self.sending_since = time.monotonic()
            await self._send(message)
            self.sending_since = None

    async def _beats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            self.heartbeat()


def build_messages(kind: str, entries: list[str]) -> Iterable[str]:
    """Join pre-encoded entries into ``{"type": kind, ...}`` messages below the size cap."""
    head = f'{{"type":"{kind}","timestamp":"{now_iso()}","entries":['
    chunk: list[str] = []
    size = 0
    for frag in entries:
        if chunk and (size + len(frag) > MAX_MESSAGE_BYTES or len(chunk) >= CHUNK_ENTRIES):
            yield head + ",".join(chunk) + "]}"
            chunk, size = [], 0
        chunk.append(frag)
        size += len(frag) + 1
    if chunk:
        yield head + ",".join(chunk) + "]}"


def error_message(text: str) -> str:
    return json.dumps({"type": "error", "timestamp": now_iso(), "error": text})


class Hub:
    """Sessions and subscribers of one monitor server."""

    def __init__(self, *, history_limit: int = 10_000, max_sessions: int = 200,
                 replay_limit: int = 5_000, default_budget: int = 256_000) -> None:
        self.sessions: OrderedDict[str, SessionState] = OrderedDict()
        self.subscribers: set[Subscriber] = set()
        self.history_limit = history_limit
        self.max_sessions = max_sessions
        self.replay_limit = replay_limit
        self.default_budget = default_budget
        self.started = time.monotonic()
        self.last_activity = time.monotonic()
        self.events_received = 0

    # ------------------------------------------------------------------ feeding
    def publish(self, events: Iterable[dict[str, Any]]) -> int:
        """Record events and offer each new one to every live subscriber whose filter matches.

        Returns how many were new (events already seen by id are ignored, so a session fed
        both by a forwarding process and by its JSONL file appears once).
        """
        added = 0
        subs = [s for s in self.subscribers if s.live]
        for ev in events:
            if not isinstance(ev, dict):
                continue
            sid = ev.get("session_id")
            if not isinstance(sid, str) or not sid:
                continue
            state = self.session(sid)
            frag = json.dumps(ev, separators=(",", ":"), ensure_ascii=False, default=str)
            if not state.add(ev, frag):
                continue
            added += 1
            level = ev.get("level")
            for sub in subs:
                if sub.filter.matches(ev):
                    sub.offer(frag, level)
        if added:
            self.events_received += added
            self.last_activity = time.monotonic()
        return added

    def session(self, session_id: str) -> SessionState:
        state = self.sessions.get(session_id)
        if state is None:
            state = SessionState(session_id, self.history_limit, self.default_budget)
            self.sessions[session_id] = state
            self._evict()
        else:
            self.sessions.move_to_end(session_id)
        return state

    def _evict(self) -> None:
        # Forget the least recently active finished sessions first, then the oldest live ones.
        while len(self.sessions) > self.max_sessions:
            victim = next((sid for sid, s in self.sessions.items() if not s.is_alive),
                          next(iter(self.sessions)))
            del self.sessions[victim]

    def end_session(self, session_id: str) -> None:
        state = self.sessions.get(session_id)
        if state is not None and state.is_alive:
            state.is_alive = False
            state.open_ops.clear()
            self.last_activity = time.monotonic()

    # ------------------------------------------------------------------ subscribers
    def add(self, sub: Subscriber) -> None:
        self.subscribers.add(sub)
        sub.start()

    def remove(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        sub.close()

    def go_live(self, sub: Subscriber) -> int:
        """Send the history that matches the client's filter, then switch it to live delivery.

        No await happens between the snapshot and ``live = True``: nothing is lost or doubled.
        """
        matched: list[tuple[str, int, str]] = []
        for state in self.sessions.values():
            for i, (ev, frag) in enumerate(state.history):
                if sub.filter.matches(ev):
                    matched.append((ev.get("timestamp") or "", i, frag))
        matched.sort(key=lambda item: (item[0], item[1]))
        frags = [frag for _, _, frag in matched[-self.replay_limit:]]
        if frags:
            sub.send_entries("buffer_flush", frags)
        sub.live = True
        return len(frags)

    def heartbeat_for(self, sub: Subscriber) -> dict[str, Any]:
        state: SessionState | None
        if sub.filter.session_id is not None:
            state = self.sessions.get(sub.filter.session_id)
        else:
            alive = [s for s in self.sessions.values() if s.is_alive]
            pool = alive or list(self.sessions.values())
            state = max(pool, key=lambda s: s.last_activity) if pool else None
        beat: dict[str, Any] = {
            "session_id": sub.filter.session_id,
            "is_alive": False,
            "current_operation": None,
            "current_component": None,
            "tokens_used": 0,
            "budget_remaining": self.default_budget,
            "logs_since_last_heartbeat": sub.logs_since_heartbeat,
            "uptime_seconds": round(time.monotonic() - self.started, 1),
        }
        if state is not None:
            beat.update(session_id=state.session_id, is_alive=state.is_alive,
                        current_operation=state.current_operation,
                        current_component=state.current_component,
                        tokens_used=state.tokens_used, budget_remaining=state.budget_remaining)
        return beat

    def flush_all(self) -> None:
        for sub in list(self.subscribers):
            sub.flush()

    # ------------------------------------------------------------------ reads
    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "service": "sigil-monitor",
            "uptime_seconds": round(time.monotonic() - self.started, 1),
            "sessions": len(self.sessions),
            "live_sessions": sum(1 for s in self.sessions.values() if s.is_alive),
            "clients": len(self.subscribers),
            "events_received": self.events_received,
        }

    def session_events(self, session_id: str, filt: Filter, limit: int | None = None
                       ) -> list[dict[str, Any]] | None:
        state = self.sessions.get(session_id)
        if state is None:
            return None
        events = [ev for ev, _ in state.history if filt.matches(ev)]
        return events[-limit:] if limit else events
