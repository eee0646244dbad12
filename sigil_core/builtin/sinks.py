"""Builtin log sinks: the spec's three files.

- ``outputs/sessions/<session>.jsonl``: one event a line, appended as the run goes;
- ``outputs/sessions/<session>.json``: the events and the summary, written atomically at the end;
- ``outputs/logs/<YYYY-MM-DD>.jsonl``: the daily aggregate of every session, through loguru
  (rotation by size and by day, gzip compression, retention by age and count, from config).

A registered sink may offer ``bind(run)`` returning a per-run instance; these do.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

from sigil_core import hookimpl


def _dumps(event: Any) -> str:
    return event.json_line()


def write_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file in the same folder, then rename: never a half-written file."""
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class SessionJsonlSink:
    name = "session_jsonl"

    def __init__(self) -> None:
        self._fh: Any = None
        self.path: Path | None = None

    def bind(self, run: Any) -> SessionJsonlSink:
        return SessionJsonlSink()

    def open(self, run: Any) -> None:
        folder = run.config.outputs_dir / "sessions"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{run.session_id}.jsonl"
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, events: Sequence[Any]) -> None:
        if self._fh is None:
            return
        self._fh.write("\n".join(_dumps(e) for e in events) + "\n")
        self._fh.flush()

    def close(self, run: Any, record: dict[str, Any]) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class SessionJsonSink:
    name = "session_json"

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.path: Path | None = None

    def bind(self, run: Any) -> SessionJsonSink:
        return SessionJsonSink()

    def open(self, run: Any) -> None:
        folder = run.config.outputs_dir / "sessions"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{run.session_id}.json"

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
        parts = [json.dumps(head, ensure_ascii=False, indent=2, default=str)[:-2]]
        parts.append(',\n  "events": [\n    ' + ",\n    ".join(self.lines) + "\n  ]")
        body = json.dumps(tail, ensure_ascii=False, indent=2, default=str)
        if tail:
            parts.append(",\n" + body[2:])
        else:
            parts.append("\n}")
        write_text_atomic(self.path, "".join(parts) + "\n")


# --------------------------------------------------------------------------- daily aggregate

_loguru_lock = threading.Lock()
_handlers: dict[str, list[int]] = {}  # path pattern -> [handler id, users]
#: Idle handlers kept for reuse: adding a loguru handler costs milliseconds, and a process that
#: runs many sessions (a server, the benchmarks) writes to the same daily file again and again.
_MAX_IDLE_HANDLERS = 8


def _retention(max_files: int, days: int):
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


def _rotation(max_bytes: int):
    import datetime as dt

    state: dict[str, Any] = {}

    def should_rotate(message: Any, file: Any) -> bool:
        today = dt.datetime.now(dt.timezone.utc).date()
        opened = state.setdefault(file.name, today)
        if opened != today or file.tell() + len(message) > max_bytes:
            state[file.name] = today
            return True
        return False
    return should_rotate


class DailyLogSink:
    """Appends every event of every session to the day's aggregate file via loguru."""

    name = "daily_log"

    def __init__(self) -> None:
        self.key: str | None = None
        self.min_rank = 0

    def bind(self, run: Any) -> DailyLogSink:
        return DailyLogSink()

    def open(self, run: Any) -> None:
        cfg = run.config.logging
        if not cfg.file.enabled:
            return
        os.environ.setdefault("LOGURU_AUTOINIT", "False")  # no stderr handler echoing our lines
        from loguru import logger

        from sigil_core.model import LEVEL_RANK

        self.min_rank = LEVEL_RANK.get(cfg.level, 0)
        self._rank = LEVEL_RANK
        if cfg.file.file:
            pattern = str(Path(cfg.file.file))
            Path(pattern).parent.mkdir(parents=True, exist_ok=True)
        else:
            folder = Path(cfg.file.path)
            if not folder.is_absolute() and cfg.file.path.startswith("outputs"):
                folder = run.config.outputs_dir / Path(cfg.file.path).relative_to("outputs")
            folder.mkdir(parents=True, exist_ok=True)
            pattern = str(folder / "{time:YYYY-MM-DD!UTC}.jsonl")
        with _loguru_lock:
            entry = _handlers.get(pattern)
            if entry is None:
                handler_id = logger.add(
                    pattern,
                    format="{message}",
                    level=0,
                    filter=lambda record, p=pattern: record["extra"].get("sigil_daily") == p,
                    rotation=_rotation(int(cfg.file.rotation.max_size_mb * 1024 * 1024)),
                    retention=_retention(cfg.file.rotation.max_files, cfg.file.retention_days),
                    compression="gz" if cfg.file.compress else None,
                    encoding="utf-8",
                    catch=True,
                    backtrace=False,
                    diagnose=False,
                )
                entry = _handlers[pattern] = [handler_id, 0]
            entry[1] += 1
        self.key = pattern
        self._log = logger.bind(sigil_daily=pattern)

    def write(self, events: Sequence[Any]) -> None:
        if self.key is None:
            return
        rank = self._rank
        lines = [_dumps(e) for e in events if rank[e.level] >= self.min_rank]
        if lines:
            # opt(raw=True) writes the message as is: one JSON object a line, no decoration.
            self._log.opt(raw=True).info("\n".join(lines) + "\n")

    def close(self, run: Any, record: dict[str, Any]) -> None:
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


@hookimpl(trylast=True)
def sigil_register_log_sinks(register) -> None:
    register(SessionJsonlSink())
    register(SessionJsonSink())
    register(DailyLogSink())
