"""Following ``outputs/sessions/*.jsonl`` as the runs write them.

Used twice: by ``sigil monitor serve`` (so runs started without ``--monitor``, or before the
server, are visible and late joiners get their history) and by ``sigil monitor --files``, the
spec's file-based alternative that needs no server at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sigil_core import LEVELS

from .hub import Hub


class SessionFileFollower:
    """Reads new complete lines from every session JSONL file in a directory, by polling.

    Polling (not inotify) keeps it portable; a partial last line is kept until its newline
    arrives, because the writer flushes in batches. A session is over when its ``.json``
    record (events + summary) appears beside the ``.jsonl``.
    """

    def __init__(self, directory: Path, *, recent: int | None = 20,
                 session_id: str | None = None, poll_interval: float = 0.2) -> None:
        self.directory = Path(directory)
        self.recent = recent
        self.session_id = session_id
        self.poll_interval = poll_interval
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, bytes] = {}
        self._ended: set[str] = set()
        self._first = True

    def _files(self) -> list[Path]:
        pattern = f"{self.session_id}.jsonl" if self.session_id else "*.jsonl"
        try:
            # A session's cassette (<id>.cassette.jsonl, for `sigil replay`) is not events.
            files = sorted((p for p in self.directory.glob(pattern)
                            if not p.name.endswith(".cassette.jsonl")),
                           key=lambda p: p.stat().st_mtime)
        except FileNotFoundError:
            return []
        if self._first and self.recent is not None:
            # On start, only the most recent sessions: an old outputs/ may hold thousands.
            for old in files[:-self.recent] if self.recent else files:
                self._offsets[old] = old.stat().st_size
        self._first = False
        return files

    def poll(self) -> tuple[list[dict[str, Any]], list[str]]:
        """New events since the last poll, and the sessions that ended since then."""
        events: list[dict[str, Any]] = []
        ended: list[str] = []
        for path in self._files():
            offset = self._offsets.get(path, 0)
            try:
                size = path.stat().st_size
                if size < offset:  # truncated or replaced: read again from the start
                    offset, self._partial[path] = 0, b""
                if size > offset:
                    with path.open("rb") as fh:
                        fh.seek(offset)
                        chunk = fh.read(size - offset)
                    self._offsets[path] = offset + len(chunk)
                    data = self._partial.pop(path, b"") + chunk
                    *lines, rest = data.split(b"\n")
                    if rest:
                        self._partial[path] = rest
                    for line in lines:
                        if line.strip():
                            try:
                                ev = json.loads(line)
                            except ValueError:
                                continue  # a corrupt line is skipped, not fatal
                            if isinstance(ev, dict):
                                events.append(ev)
            except FileNotFoundError:
                continue
            sid = path.stem
            if sid not in self._ended and path.with_suffix(".json").exists() \
                    and path not in self._partial:
                self._ended.add(sid)
                ended.append(sid)
        return events, ended

    async def run_into(self, hub: Hub) -> None:
        while True:
            events, ended = self.poll()
            if events:
                hub.publish(events)
            for sid in ended:
                hub.end_session(sid)
            await asyncio.sleep(self.poll_interval)


def format_line(ev: dict[str, Any]) -> str:
    """The spec's file_monitor.sh line: ``HH:MM:SS [LEVEL] component/operation: message``."""
    ts = str(ev.get("timestamp", ""))
    clock = ts.split("T")[1].split(".")[0] if "T" in ts else ts
    tokens = ev.get("tokens_used")
    extra = f" ({tokens.get('total_tokens')} tokens)" if isinstance(tokens, dict) else ""
    return (f"{clock} [{str(ev.get('level', '')).upper()}] {ev.get('component', '')}/"
            f"{ev.get('operation', '')}: {ev.get('message', '')}{extra}")


def follow_files(directory: Path, *, session_id: str | None, component: str | None,
                 min_level: str, follow: bool, echo: Callable[[str], None],
                 poll_interval: float = 0.2) -> Iterator[None]:
    """Print matching events of the session files; with ``follow``, keep going (tail -f)."""
    import time

    allowed = set(LEVELS[LEVELS.index(min_level):])
    # Existing content: the named session whole, else only the latest session (like tail -f).
    follower = SessionFileFollower(directory, recent=None if session_id else 1,
                                   session_id=session_id,
                                   poll_interval=poll_interval)
    current: str | None = None
    while True:
        events, _ = follower.poll()
        for ev in events:
            if ev.get("level") not in allowed or (component and ev.get("component") != component):
                continue
            sid = ev.get("session_id")
            if session_id is None and sid != current:
                echo(f"--- {sid} ---")
                current = sid
            echo(format_line(ev))
        yield None
        if not follow:
            return
        time.sleep(poll_interval)
