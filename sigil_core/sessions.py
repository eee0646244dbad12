"""Reading recorded sessions back: the list, and one session's events as an operation tree."""

from __future__ import annotations

import json
import os
import re
import socket
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from .errors import UsageError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def list_sessions(folder: Path) -> list[dict[str, Any]]:
    """Every session in ``folder``, newest first: id, created_at, status, total_tokens, task.

    A session's ``.json`` (written when the run ends) is its record. A session with only its
    ``.jsonl`` (still running, or killed hard: SIGKILL, power loss) is described from the
    journal: the task, the tokens and the last operation, and ``running`` only while the
    process named in its first event is alive, else ``incomplete``.
    """
    out: dict[str, dict[str, Any]] = {}
    if not folder.is_dir():
        return []
    for path in folder.glob("*.jsonl"):
        if path.name.endswith(".cassette.jsonl"):
            continue
        out[path.stem] = journal_info(path)
    for path in folder.glob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        sid = data.get("session_id", path.stem)
        summary = data.get("summary", {})
        out[sid] = {
            "session_id": sid,
            "created_at": data.get("created_at", ""),
            "status": data.get("status") or ("ok" if summary.get("success") else "failed"),
            "total_tokens": summary.get("total_tokens", 0),
            "task": data.get("task", ""),
            "mtime": path.stat().st_mtime,
        }
    return sorted(out.values(), key=lambda s: s["mtime"], reverse=True)


def journal_info(path: Path) -> dict[str, Any]:
    """What a session's ``.jsonl`` alone says about it (see :func:`list_sessions`)."""
    info: dict[str, Any] = {"session_id": path.stem, "created_at": "", "status": "incomplete",
                            "total_tokens": 0, "task": "", "last_operation": None,
                            "pid": None, "host": None, "events": 0}
    try:
        info["mtime"] = path.stat().st_mtime
        events = read_journal(path)
    except OSError:
        info.update(status="unreadable", mtime=0.0)
        return info
    info["events"] = len(events)
    if not events:
        return info
    last = events[-1]
    # The initialize event carries the task, pid and host (a warning may come before it).
    first = next((e for e in events if "pid" in (e.get("metadata") or {})), events[0])
    meta = first.get("metadata") or {}
    info["created_at"] = first.get("timestamp", "")
    info["task"] = meta.get("task", "")
    info["pid"], info["host"] = meta.get("pid"), meta.get("host")
    for e in events:
        snap = e.get("budget_snapshot") or {}
        info["total_tokens"] = max(info["total_tokens"], snap.get("used", 0) or 0)
    info["last_operation"] = f"{last.get('component')}/{last.get('operation')}"
    if _process_alive(info["pid"], info["host"], first.get("timestamp", "")):
        info["status"] = "running"
    return info


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The events of a ``.jsonl``, skipping a torn last line (a run killed mid-write)."""
    events = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    events.append(event)
    return events


def _process_alive(pid: Any, host: Any, started_iso: str) -> bool:
    """Whether the run's process still runs: same host, the pid exists, and (where /proc
    tells) it started before the session did, so a recycled pid is not mistaken for it."""
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    except OSError:
        return False
    return _started_before(pid, started_iso)


def _started_before(pid: int, started_iso: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        proc_start = boot + ticks / os.sysconf("SC_CLK_TCK")
        session_start = datetime.fromisoformat(started_iso).timestamp()
    except (OSError, ValueError, IndexError, StopIteration):
        return True  # no /proc (not Linux): the pid check is all there is
    return proc_start <= session_start + 2.0  # btime has 1 s resolution


def describe_unfinished(folder: Path, session_id: str) -> str | None:
    """One line for a session that has no final record (None when it has one)."""
    if (folder / f"{session_id}.json").exists():
        return None
    path = folder / f"{session_id}.jsonl"
    if not path.exists():
        return None
    info = journal_info(path)
    why = ("still running" if info["status"] == "running"
           else "no final record: the run was killed or crashed")
    who = f" (pid {info['pid']} on {info['host']})" if info["pid"] else ""
    return (f"Session {session_id}: {info['status']}{who}, {why}; task: {info['task']!r}; "
            f"{info['total_tokens']:,} tokens used; last operation: {info['last_operation']}")


def load_events(folder: Path, session_id: str) -> list[dict[str, Any]]:
    if not _ID.match(session_id):
        raise UsageError(f"invalid session id {session_id!r}")
    json_path = folder / f"{session_id}.json"
    jsonl_path = folder / f"{session_id}.jsonl"
    if json_path.exists():
        try:
            return cast("list[dict[str, Any]]", json.loads(json_path.read_text(encoding="utf-8"))["events"])
        except (OSError, ValueError, KeyError):
            pass  # fall back to the streamed log
    if not jsonl_path.exists():
        raise UsageError(f"no session {session_id!r} in {folder} (see `sigil sessions list`)")
    return read_journal(jsonl_path)


def build_tree(events: list[dict[str, Any]]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Nodes by operation id (first event gives the name, last gives tokens), and the roots."""
    nodes: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for e in events:
        oid = e.get("operation_id") or e["id"]
        node = nodes.get(oid)
        if node is None:
            node = nodes[oid] = {"id": oid, "parent": e.get("parent_operation_id"),
                                 "component": e.get("component"), "operation": e.get("operation"),
                                 "message": e.get("message"), "level": e.get("level"),
                                 "tokens": None, "duration_ms": None, "children": []}
            order.append(oid)
        else:
            node["message"] = e.get("message")
            node["level"] = e.get("level")
        if e.get("tokens_used"):
            node["tokens"] = e["tokens_used"].get("total_tokens")
        if e.get("duration_ms") is not None:
            node["duration_ms"] = e["duration_ms"]
    roots = []
    for oid in order:
        parent = nodes[oid]["parent"]
        if parent in nodes:
            nodes[parent]["children"].append(oid)
        else:
            roots.append(oid)
    return roots, nodes


def render_tree(events: list[dict[str, Any]]) -> str:
    roots, nodes = build_tree(events)
    lines: list[str] = []

    def walk(oid: str, prefix: str, last: bool, top: bool) -> None:
        n = nodes[oid]
        branch = "" if top else ("└─ " if last else "├─ ")
        extra = []
        if n["tokens"]:
            extra.append(f"{n['tokens']:,} tok")
        if n["duration_ms"] is not None:
            extra.append(f"{n['duration_ms']:.0f} ms")
        level = "" if n["level"] in ("info", "debug") else f" [{n['level'].upper()}]"
        lines.append(f"{prefix}{branch}{n['component']}/{n['operation']}: {n['message']}{level}"
                     + (f"  ({', '.join(extra)})" if extra else ""))
        kids = n["children"]
        child_prefix = prefix + ("" if top else ("   " if last else "│  "))
        for i, kid in enumerate(kids):
            walk(kid, child_prefix, i == len(kids) - 1, False)

    for oid in roots:
        walk(oid, "", True, True)
    total = sum(n["tokens"] or 0 for n in nodes.values())
    lines.append(f"-- {len(events)} events, {total:,} tokens booked to operations")
    return "\n".join(lines)
