"""The tool listings of MCP servers, cached so registering tools does not start servers.

Tools must be registered (by name, with description and schema) before a run plans, but
servers are connected only when a step calls one. The listing a server gave the last time it
was connected is kept in ``<SIGIL_HOME>/cache/mcp_tools.json``, keyed by server name and a
fingerprint of what is started (command, args, env, url), and refreshed on every connection.
A server with no cached listing is discovered once (started, listed, stopped) when the tools
are first registered; ``sigil tools list`` always lists live and refreshes the cache.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from sigil_core import ToolError

from .client import SessionPool
from .settings import ServerConfig

CACHE_FILE = "cache/mcp_tools.json"
_written: dict[tuple[str, str], str] = {}


def cache_path(home: Path) -> Path:
    return Path(home) / CACHE_FILE


def _load(home: Path) -> dict[str, Any]:
    try:
        data = json.loads(cache_path(home).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached_listing(home: Path, server: ServerConfig) -> dict[str, dict[str, Any]] | None:
    """The server's last known tools (name -> info), or None when unknown or stale."""
    entry = _load(home).get(server.name)
    if not isinstance(entry, dict) or entry.get("fingerprint") != server.fingerprint():
        return None
    tools = entry.get("tools")
    if not isinstance(tools, dict):
        return None
    return tools


def remember(home: Path, server: ServerConfig, tools: dict[str, dict[str, Any]]) -> None:
    """Store a live listing (only when it changed; several processes may share the file)."""
    blob = json.dumps(tools, sort_keys=True)
    key = (str(home), server.name)
    if _written.get(key) == blob:
        return
    data = _load(home)
    old = data.get(server.name)
    if isinstance(old, dict) and old.get("fingerprint") == server.fingerprint() and \
            json.dumps(old.get("tools"), sort_keys=True) == blob:
        _written[key] = blob
        return
    data[server.name] = {"fingerprint": server.fingerprint(), "tools": tools}
    path = cache_path(home)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".mcp_tools.", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        return  # a read-only home only costs a rediscovery next time
    _written[key] = blob


async def list_live(servers: dict[str, ServerConfig]) -> dict[str, dict[str, Any] | ToolError]:
    """Connect to every server concurrently; its tools, or the ToolError it failed with."""
    pool = SessionPool(servers)
    out: dict[str, dict[str, Any] | ToolError] = {}

    async def one(name: str) -> None:
        try:
            conn = await pool.get(name)
            out[name] = {"tools": conn.tools, "server_info": conn.server_info}
        except ToolError as exc:
            out[name] = exc

    try:
        await asyncio.gather(*(one(n) for n in servers))
    finally:
        await pool.aclose()
    return out


def discover(home: Path, servers: dict[str, ServerConfig]) -> dict[str, dict[str, Any]]:
    """Start, list and stop servers with no cached listing, from synchronous code.

    Registration hooks are synchronous and may run inside the core's event loop, so the
    discovery gets its own loop in a worker thread.
    """
    if not servers:
        return {}
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mcp-discover") as ex:
        results = ex.submit(asyncio.run, list_live(servers)).result()
    found: dict[str, dict[str, Any]] = {}
    for name, value in results.items():
        if isinstance(value, ToolError):
            print(f"warning: tools_mcp: {value.message}; its tools are not registered "
                  f"(list them with an 'allow:' list or fix the server)", file=sys.stderr)
            continue
        remember(home, servers[name], value["tools"])
        found[name] = value["tools"]
    return found
