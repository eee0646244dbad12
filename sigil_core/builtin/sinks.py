"""Builtin log sinks: the spec's three files.

- ``outputs/sessions/<session>.jsonl``: one event a line, appended as the run goes;
- ``outputs/sessions/<session>.json``: the events and the summary, written atomically at the end;
- ``outputs/logs/<YYYY-MM-DD>.jsonl``: the daily aggregate of every session, through loguru
  (rotation by size and by day, gzip compression, retention by age and count, from config).

A registered sink may offer ``bind(run)`` returning a per-run instance; these do.
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sigil_core import hookimpl
from sigil_core.errors import StorageError
from sigil_core.files import (
    JsonlAppender,
    pretty_json,
    private_mkdir,
    private_open,
    private_opener,
    trim_torn_tail,
    write_text_atomic,
)


def _dumps(event: Any) -> str:
    line: str = event.json_line()
    return line


class SessionJsonlSink:
    """Appends each batch as whole lines (or nothing, on a full disk: see JsonlAppender)."""

    name = "session_jsonl"
    #: A quick close (local files): called on the event loop (see LogSink).
    close_on_loop = True

    def __init__(self) -> None:
        self._out: JsonlAppender | None = None
        self.path: Path | None = None

    def bind(self, run: Any) -> SessionJsonlSink:
        return SessionJsonlSink()

    def open(self, run: Any) -> None:
        folder = private_mkdir(run.config.outputs_dir / "sessions")
        self.path = folder / f"{run.session_id}.jsonl"
        self._out = JsonlAppender(self.path)

    def write(self, events: Sequence[Any]) -> None:
        if self._out is None:
            return
        self._out.append("\n".join(_dumps(e) for e in events) + "\n")

    def close(self, run: Any, record: dict[str, Any]) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


class SessionJsonSink:
    name = "session_json"
    #: A quick close (local files): called on the event loop (see LogSink).
    close_on_loop = True

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.path: Path | None = None

    def bind(self, run: Any) -> SessionJsonSink:
        return SessionJsonSink()

    def open(self, run: Any) -> None:
        folder = private_mkdir(run.config.outputs_dir / "sessions")
        self.path = folder / f"{run.session_id}.json"
        if run.ctx.attempt > 1:
            # A resumed session's record describes the whole session: earlier attempts' events
            # (from the journal, whole lines only) come first.
            journal = folder / f"{run.session_id}.jsonl"
            if journal.exists():
                for line in journal.read_text(encoding="utf-8", errors="replace").splitlines():
                    try:
                        json.loads(line)
                    except ValueError:
                        continue
                    self.lines.append(line)

    def write(self, events: Sequence[Any]) -> None:
        self.lines.extend(e.json_line() for e in events)

    def close(self, run: Any, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        # The spec's key order: ids and times, the events, then the summary and results. The
        # events are spliced in as already-serialised lines rather than encoded a second time.
        head = {k: record[k] for k in ("session_id", "created_at", "updated_at", "task")
                if k in record}
        tail = {k: v for k, v in record.items() if k not in head}
        parts = [pretty_json(head)[:-2]]
        parts.append(',\n  "events": [\n    ' + ",\n    ".join(self.lines) + "\n  ]")
        body = pretty_json(tail)
        if tail:
            parts.append(",\n" + body[2:])
        else:
            parts.append("\n}")
        try:
            # Not forced to disk (no fsync): the record is rebuilt from the journal, which
            # is the session's checkpoint and is not forced either; readers that find a
            # record unreadable (one a power loss emptied) read the journal instead
            # (sigil_core.sessions). Renamed into place, it survives a crash of the process.
            # 100 concurrent runs' fsyncs, one journal commit each, held up their ends.
            write_text_atomic(self.path, "".join(parts) + "\n", durable=False)
        except OSError as exc:  # a failed write's error names no file: this one says which
            raise StorageError.from_os_error(self.path, exc) from None


# --------------------------------------------------------------------------- daily aggregate

_loguru_lock = threading.Lock()
_handlers: dict[str, list[int]] = {}  # path pattern -> [handler id, users]
#: Idle handlers kept for reuse: adding a loguru handler costs milliseconds, and a process that
#: runs many sessions (a server, the benchmarks) writes to the same daily file again and again.
_MAX_IDLE_HANDLERS = 8


def _retention(max_files: int, days: int) -> Any:
    import time

    def clean(files: list[str]) -> None:
        now = time.time()
        ordered = sorted(files, key=lambda f: os.stat(f).st_mtime, reverse=True)
        for i, f in enumerate(ordered):
            if i >= max_files or now - os.stat(f).st_mtime > days * 86400:
                try:
                    os.remove(f)
                except OSError:
                    pass
    return clean


def _rotation(max_bytes: int) -> Any:
    import datetime as dt

    state: dict[str, Any] = {}

    def should_rotate(message: Any, file: Any) -> bool:
        today = dt.datetime.now(dt.UTC).date()
        opened = state.setdefault(file.name, today)
        if opened != today or file.tell() + len(message) > max_bytes:
            state[file.name] = today
            return True
        return False
    return should_rotate


#: The file each daily handler writes now (pattern -> (fd, path)), recorded by its opener.
_open_files: dict[str, tuple[int, str]] = {}


def _daily_opener(pattern: str, path: str, flags: int) -> int:
    fd = private_opener(path, flags)
    _open_files[pattern] = (fd, path)
    return fd


def _trim_daily(pattern: str) -> None:
    """Cut a torn last line left in today's file by a crash or a full disk."""
    import datetime as dt

    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    path = Path(pattern.replace("{time:YYYY-MM-DD!UTC}", today))
    if "{" not in str(path) and path.is_file():
        fd = private_open(path, os.O_RDWR)
        try:
            trim_torn_tail(fd)
        finally:
            os.close(fd)


def _drop_failed_handler(pattern: str) -> str | None:
    """After a failed write: cut the torn line, close the handler, return the file's path.

    The text loguru could not write stays in the file object's buffer and would be flushed
    (torn again) whenever it is closed; pointing its descriptor at /dev/null first makes that
    flush harmless, and the real file is then cut back to its last whole line.
    """
    from loguru import logger

    with _loguru_lock:
        fd, path = _open_files.pop(pattern, (None, None))
        if fd is not None:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, fd)
            except OSError:
                pass
            finally:
                os.close(null)
        entry = _handlers.pop(pattern, None)
        if entry is not None:
            try:
                logger.remove(entry[0])
            except Exception:  # noqa: BLE001, S110 - the handler is gone either way
                pass
        if path is not None:
            try:
                rw = os.open(path, os.O_RDWR)
                try:
                    trim_torn_tail(rw)
                finally:
                    os.close(rw)
            except OSError:
                pass
    return path


class _DailyBatch:
    """Lines for one daily file from this process's runs, waiting to be written together (see
    :data:`_DAILY_WINDOW_S`), the sinks they came from, and the event loop whose timer will
    write them (None: no timer)."""

    __slots__ = ("closing", "lines", "loop", "sinks")

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.sinks: dict[int, DailyLogSink] = {}
        self.loop: Any = None
        #: Runs closing (DailyLogSink.aclose) that wait for this batch's write: one future per
        #: event loop they wait on, resolved once the batch is written (or failed).
        self.closing: dict[Any, Any] = {}


#: pattern -> what the runs of this process have left for that file (see DailyLogSink.write).
_batches: dict[str, _DailyBatch] = {}
_batches_lock = threading.Lock()
#: One writer at a time: lines reach the file in the order they were left.
_write_lock = threading.Lock()
#: Flushes a batch holds at most: code that emits without letting the loop turn (thousands
#: of events in a row) still writes as it goes, and holds no more than this in memory.
_BATCH_FLUSHES = 64


def _write_daily(pattern: str) -> None:
    """Write the lines left for ``pattern``'s file, in one loguru call. A failed write is the
    failure of every sink whose lines it held (each raises it once, see DailyLogSink)."""
    from loguru import logger

    with _write_lock:
        with _batches_lock:
            batch = _batches.pop(pattern, None)
        if batch is None:
            return
        try:
            # opt(raw=True) writes the message as is: one JSON object a line, no decoration.
            logger.bind(sigil_daily=pattern).opt(raw=True).info("".join(batch.lines))
        except OSError as exc:
            path = _drop_failed_handler(pattern)
            error = StorageError.from_os_error(path or pattern, exc)
            for sink in batch.sinks.values():
                sink.key, sink.failed = None, error
        finally:
            for loop, done in batch.closing.items():
                _resolve_on(loop, done)


def _resolve_on(loop: Any, done: Any) -> None:
    """Resolve ``done`` (a future of ``loop``) from whichever thread wrote the batch."""
    import asyncio

    def resolve() -> None:
        if not done.done():
            done.set_result(None)

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        resolve()
    else:
        try:
            loop.call_soon_threadsafe(resolve)
        except RuntimeError:  # that loop is closed: nobody waits there any more
            pass


#: How long the first lines of a batch wait for other runs' lines before the batch is written.
#: Written at the end of each turn of the event loop instead, 100 concurrent runs made ~160
#: loguru calls (0.3 ms of CPU each: the record, the handlers' filters, the rotation check),
#: ~0.4 ms of every run's CPU; a window of 50 ms makes a dozen. A run's last lines are still
#: written when it closes, and whatever waits when the process exits (atexit).
_DAILY_WINDOW_S = 0.05


def _write_later(batch: _DailyBatch, key: str) -> bool:
    """Have the running event loop write ``key``'s batch :data:`_DAILY_WINDOW_S` from now,
    unless a timer of this loop will already (call with ``_batches_lock`` held); False when
    there is no running loop: the caller writes at once."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    if batch.loop is not loop:  # none yet, or one of a loop that has ended since
        batch.loop = loop
        # In an empty context: the write is every run's, and the caller's context (its run,
        # as the current run) would stay alive as long as the timer.
        loop.call_later(_DAILY_WINDOW_S, _write_daily, key, context=contextvars.Context())
    return True


def _write_all_daily() -> None:
    """At exit: the lines still waiting (a run that never closed its sinks)."""
    for key in list(_batches):
        try:
            _write_daily(key)
        except Exception:  # noqa: BLE001, S110 - the process is ending; nothing to report to
            pass


@functools.cache
def _write_all_daily_at_exit() -> None:
    """Once per process, with the first daily handler: registered after loguru's own exit
    hook, so it runs before loguru closes its files."""
    import atexit

    atexit.register(_write_all_daily)


class DailyLogSink:
    """Appends every event of every session to the day's aggregate file via loguru.

    The lines of all the runs of a process that flush within :data:`_DAILY_WINDOW_S` (50 ms)
    are written together (one loguru call, one system call): with 100 concurrent runs a call
    per run and flush was ~7% of the event loop's time, a call per turn of the loop still
    ~10%. A run's last lines are written when it closes, and a failed write is reported by
    every run that had lines in it, as its own storage error.
    """

    name = "daily_log"
    #: A quick close (local files): called on the event loop (see LogSink).
    close_on_loop = True

    def __init__(self) -> None:
        self.key: str | None = None
        self.min_rank = 0
        self.failed: StorageError | None = None

    def bind(self, run: Any) -> DailyLogSink:
        return DailyLogSink()

    def open(self, run: Any) -> None:
        cfg = run.config.logging
        if not cfg.file.enabled:
            return
        os.environ.setdefault("LOGURU_AUTOINIT", "False")  # no stderr handler echoing our lines
        from loguru import logger

        from sigil_core.constants import LEVEL_RANK

        self.min_rank = LEVEL_RANK.get(cfg.level, 0)
        self._rank = LEVEL_RANK
        # Absolute: the handler is kept for the file, and a process that runs again from
        # another folder (an application, the tests) must not write to the first one's.
        if cfg.file.file:
            pattern = os.path.abspath(cfg.file.file)
            private_mkdir(Path(pattern).parent)
        else:
            folder = Path(cfg.file.path)
            if not folder.is_absolute() and cfg.file.path.startswith("outputs"):
                folder = run.config.outputs_dir / Path(cfg.file.path).relative_to("outputs")
            private_mkdir(folder)
            pattern = os.path.join(os.path.abspath(folder), "{time:YYYY-MM-DD!UTC}.jsonl")
        with _loguru_lock:
            entry = _handlers.get(pattern)
            if entry is None:
                _trim_daily(pattern)
                handler_id = logger.add(
                    pattern,
                    format="{message}",
                    level=0,
                    filter=lambda record, p=pattern: record["extra"].get("sigil_daily") == p,
                    rotation=_rotation(int(cfg.file.rotation.max_size_mb * 1024 * 1024)),
                    retention=_retention(cfg.file.rotation.max_files, cfg.file.retention_days),
                    compression="gz" if cfg.file.compress else None,
                    encoding="utf-8",
                    # A failed write raises to write() below, which cuts the torn line and
                    # reports the file once, instead of loguru printing a traceback per batch.
                    catch=False,
                    backtrace=False,
                    diagnose=False,
                    opener=functools.partial(_daily_opener, pattern),
                )
                entry = _handlers[pattern] = [handler_id, 0]
                _write_all_daily_at_exit()
            entry[1] += 1
        self.key = pattern

    def _raise_failure(self) -> None:
        if self.failed is not None:
            error, self.failed = self.failed, None
            raise error

    def write(self, events: Sequence[Any]) -> None:
        self._raise_failure()  # of a write of lines this sink left earlier
        key = self.key
        if key is None:
            return
        rank = self._rank
        lines = [_dumps(e) for e in events if rank[e.level] >= self.min_rank]
        if not lines:
            return
        with _batches_lock:
            batch = _batches.get(key)
            if batch is None:
                batch = _batches[key] = _DailyBatch()
            batch.lines.append("\n".join(lines) + "\n")
            batch.sinks[id(self)] = self
            now = len(batch.lines) >= _BATCH_FLUSHES or not _write_later(batch, key)
        if now:
            _write_daily(key)
            self._raise_failure()

    def close(self, run: Any, record: dict[str, Any]) -> None:
        if self.key is not None:
            _write_daily(self.key)  # this run's last lines, if still waiting
        self._release()

    async def aclose(self, run: Any, record: dict[str, Any]) -> None:
        """The close on the run's event loop: this run's last lines are written with those of
        every run that closes in the same turn of the loop, then a failed write is raised as
        in :meth:`close`. With 100 concurrent runs, the runs a memory write releases together
        end together: a loguru call each (~70 us of CPU) was ~40% of the daily log's cost."""
        import asyncio

        key = self.key
        if key is not None:
            loop = asyncio.get_running_loop()
            with _batches_lock:
                batch = _batches.get(key)
                done = None
                if batch is not None and id(self) in batch.sinks:
                    done = batch.closing.get(loop)
                    if done is None:
                        done = batch.closing[loop] = loop.create_future()
                        # At the end of this turn: the runs released with this one close first.
                        loop.call_soon(_write_daily, key, context=contextvars.Context())
            if done is not None:
                await asyncio.shield(done)
        self._release()

    def _release(self) -> None:
        """Raise a failed write of this sink's lines; give back the file's handler."""
        self._raise_failure()
        if self.key is None:
            return
        from loguru import logger

        with _loguru_lock:
            entry = _handlers.get(self.key)
            if entry is not None:
                entry[1] -= 1
            idle = [k for k, e in _handlers.items() if e[1] <= 0]
            for key in idle[: max(0, len(idle) - _MAX_IDLE_HANDLERS)]:
                logger.remove(_handlers.pop(key)[0])
        self.key = None


class _SinkPlugin:
    """One builtin sink as its own plugin, so each can be disabled on its own
    (``SIGIL_DISABLE_PLUGINS=builtin.daily_log``)."""

    def __init__(self, sink: type) -> None:
        self.sink = sink

    @hookimpl(trylast=True)
    def sigil_register_log_sinks(self, register: Any) -> None:
        register(self.sink())


session_jsonl = _SinkPlugin(SessionJsonlSink)
session_json = _SinkPlugin(SessionJsonSink)
daily_log = _SinkPlugin(DailyLogSink)
