"""Shared helpers for the monitor_ws tests (imported by module name; no conftest clashes)."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from typing import Any

from sigil_core import BudgetSnapshot, LogEvent, TokenUsage

_seq = itertools.count(1)


def make_event(session_id: str = "sess_a", *, level: str = "info", component: str = "router",
               operation: str = "route_request", message: str = "hello",
               operation_id: str | None = None, parent: str | None = None,
               correlation_id: str | None = None, used: int | None = None,
               tokens: int | None = None, duration_ms: float | None = None) -> LogEvent:
    """A LogEvent as the core would emit it; ids and timestamps increase."""
    n = next(_seq)
    snap = None
    if used is not None:
        snap = BudgetSnapshot(total_budget=256_000, used=used, remaining=256_000 - used,
                              percentage_used=round(used / 2560, 2))
    return LogEvent(
        id=f"log_t_{n:07d}",
        timestamp=f"2026-01-11T14:{(n // 60000) % 60:02d}:{(n // 1000) % 60:02d}.{n % 1000:03d}Z",
        level=level, component=component, operation=operation, message=message,
        session_id=session_id, correlation_id=correlation_id or session_id,
        operation_id=operation_id or f"op_{n}", parent_operation_id=parent,
        duration_ms=duration_ms,
        tokens_used=TokenUsage(input_tokens=tokens, output_tokens=0, total_tokens=tokens,
                               model="offline:test") if tokens else None,
        budget_snapshot=snap,
    )


def dicts(*events: LogEvent) -> list[dict[str, Any]]:
    return [e.to_dict() for e in events]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """A protocol client that records every message and waits for the ones a test needs."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, data: Any) -> None:
        await self.ws.send(data if isinstance(data, str) else json.dumps(data))

    async def next(self, kind: str | tuple[str, ...] | None = None,
                   timeout: float = 60.0) -> dict[str, Any]:
        kinds = (kind,) if isinstance(kind, str) else kind
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            self.seen.append(msg)
            if kinds is None or msg["type"] in kinds:
                return msg

    async def entries_until(self, last_id: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Every entry from log/buffer_flush messages up to and including ``last_id``."""
        out: list[dict[str, Any]] = []
        while True:
            msg = await self.next(("log", "buffer_flush"), timeout)
            out.extend(msg["entries"])
            if any(e["id"] == last_id for e in msg["entries"]):
                return out


async def wait_for(predicate: Any, timeout: float = 60.0) -> None:
    """Poll a condition on server state (same event loop as the test). The limit is generous:
    tests wait for behaviour, they do not time it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)
