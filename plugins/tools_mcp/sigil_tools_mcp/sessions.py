"""Which :class:`~sigil_tools_mcp.client.SessionPool` a tool call uses.

A Tool's ``call(arguments)`` does not receive the run, yet its MCP session belongs to the run
(one session per server per run, closed by ``run.on_close``). The core tracks the run whose
code is executing (``sigil_core.run.current_run()``, a contextvar that reaches every task the
run starts); code holding a run can also bind it explicitly (``bind_run``). Outside a run (a library caller, a test) the pool belongs to the
running event loop and is closed when the caller calls :func:`close_loop_pool` or, at the
latest, when ``asyncio.run`` cancels the owner tasks at loop shutdown (the SDK's shielded
shutdown still stops the child processes).
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from typing import Any

from .client import SessionPool
from .settings import ServerConfig, servers_from_config

_current_run: contextvars.ContextVar[Any] = contextvars.ContextVar("sigil_tools_mcp_run",
                                                                    default=None)
#: id(run) -> (run, pool). Runs are short-lived; entries leave when the run closes.
_run_pools: dict[int, tuple[Any, SessionPool]] = {}
_loop_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SessionPool] = (
    weakref.WeakKeyDictionary()
)
#: Servers for pools made outside a run (set by the registration hook from the config).
default_servers: dict[str, ServerConfig] = {}


def bind_run(run: Any) -> None:
    """Make ``run`` the owner of tool sessions started from this context."""
    if run is None:
        return
    if _current_run.get() is not run:
        _current_run.set(run)
    pool_for_run(run)


def pool_for_run(run: Any) -> SessionPool:
    entry = _run_pools.get(id(run))
    if entry is not None and entry[0] is run:
        return entry[1]
    try:
        servers = servers_from_config(run.config)
    except Exception:  # noqa: BLE001 - a bad section was already reported at registration
        servers = dict(default_servers)
    pool = SessionPool(servers)
    _run_pools[id(run)] = (run, pool)

    async def close_sessions() -> None:
        _run_pools.pop(id(run), None)
        await pool.aclose()

    on_close = getattr(run, "on_close", None)
    if on_close is not None:
        on_close(close_sessions)
    return pool


def current_run() -> Any:
    from sigil_core import current_run as core_current_run

    run = core_current_run()
    if run is not None:
        return run
    return _current_run.get()


def current_pool() -> SessionPool:
    """The pool of the current run, else of the running event loop."""
    run = current_run()
    if run is not None:
        return pool_for_run(run)
    loop = asyncio.get_running_loop()
    pool = _loop_pools.get(loop)
    if pool is None or pool.closed:
        pool = SessionPool(dict(default_servers))
        _loop_pools[loop] = pool
    return pool


async def close_loop_pool() -> None:
    """Close the sessions opened outside a run on this event loop."""
    pool = _loop_pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.aclose()
