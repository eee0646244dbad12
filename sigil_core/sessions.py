"""Reading recorded sessions back: the list, and one session's events as an operation tree."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .errors import UsageError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def list_sessions(folder: Path) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if not folder.is_dir():
        return []
    for path in folder.glob("*.jsonl"):
        sid = path.stem
        info = {"session_id": sid, "created_at": "", "status": "running", "total_tokens": 0,
                "task": "", "mtime": path.stat().st_mtime}
        try:
            with open(path, encoding="utf-8") as fh:
                first = fh.readline()
            if first:
                e = json.loads(first)
                info["created_at"] = e.get("timestamp", "")
                info["task"] = ""
        except (OSError, ValueError):
            info["status"] = "unreadable"
        out[sid] = info
    for path in folder.glob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        sid = data.get("session_id", path.stem)
        summary = data.get("summary", {})
        out[sid] = {
            "session_id": sid,
            "created_at": data.get("created_at", ""),
            "status": "ok" if summary.get("success") else "failed",
            "total_tokens": summary.get("total_tokens", 0),
            "task": data.get("task", ""),
            "mtime": path.stat().st_mtime,
        }
    return sorted(out.values(), key=lambda s: s["mtime"], reverse=True)


def load_events(folder: Path, session_id: str) -> list[dict[str, Any]]:
    if not _ID.match(session_id):
        raise UsageError(f"invalid session id {session_id!r}")
    json_path = folder / f"{session_id}.json"
    jsonl_path = folder / f"{session_id}.jsonl"
    if json_path.exists():
        try:
            return json.loads(json_path.read_text(encoding="utf-8"))["events"]
        except (OSError, ValueError, KeyError):
            pass  # fall back to the streamed log
    if not jsonl_path.exists():
        raise UsageError(f"no session {session_id!r} in {folder} (see `sigil sessions list`)")
    events = []
    with open(jsonl_path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue  # a torn last line of a crashed run
    return events


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
