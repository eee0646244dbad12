"""The event bus: buffers a run's events and hands them to the sinks and monitor transports.

Events are buffered and flushed when 100 are waiting or 100 ms have passed (both configurable),
whichever comes first; an error or critical event flushes at once. Listeners (the live display)
see each event immediately. A sink that raises is reported once on stderr and dropped: a broken
log sink never ends a run.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .constants import LEVEL_RANK
from .errors import StorageError
from .model import LogEvent

_ERROR_RANK = LEVEL_RANK["error"]
_ids = itertools.count(1)
_PREFIX = os.urandom(4).hex()


def new_event_id() -> str:
    """Unique, cheap, and sortable within a process: ``log_<process>_<sequence>``."""
    return f"log_{_PREFIX}_{next(_ids):06d}"


class EventBus:
    def __init__(
        self,
        sinks: Sequence[Any] = (),
        *,
        buffer_size: int = 100,
        flush_interval_ms: float = 100,
        min_level: str = "trace",
    ) -> None:
        self.sinks: list[Any] = list(sinks)
        self.transports: list[Any] = []
        self.listeners: list[Callable[[LogEvent], None]] = []
        self.buffer_size = buffer_size
        self.flush_interval = flush_interval_ms / 1000.0
        self.min_rank = LEVEL_RANK[min_level]
        self.events: list[LogEvent] = []
        self._buffer: list[LogEvent] = []
        self._timer: asyncio.TimerHandle | None = None
        #: Sinks that could not write their file (disk full...): reported once at the end of
        #: the run, which then exits non-zero, rather than a warning per sink.
        self.storage_errors: list[OSError | StorageError] = []

    def emit(self, event: LogEvent) -> None:
        rank = LEVEL_RANK[event.level]
        if rank < self.min_rank:
            return
        self.events.append(event)
        if self.listeners:
            for listener in self.listeners:
                try:
                    listener(event)
                except Exception:  # noqa: BLE001, S110 - the display must never break the run
                    pass
        buffer = self._buffer
        buffer.append(event)
        if rank >= _ERROR_RANK or len(buffer) >= self.buffer_size:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._timer = loop.call_later(self.flush_interval, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        for target in (self.sinks, self.transports):
            for sink in list(target):
                try:
                    (sink.write if target is self.sinks else sink.publish)(batch)
                except Exception as exc:  # noqa: BLE001
                    target.remove(sink)
                    if target is self.sinks and isinstance(exc, (OSError, StorageError)):
                        self.storage_errors.append(exc)
                        continue
                    print(f"warning: log sink {getattr(sink, 'name', sink)!r} failed and was "
                          f"disabled: {type(exc).__name__}: {exc}", file=sys.stderr)
