"""Connections to MCP servers: started lazily, one per server per run, closed at the end.

The SDK's transports (``stdio_client``, ``streamable_http_client``) and ``ClientSession`` are
anyio context managers whose cancel scopes must be exited by the task that entered them. A run
calls tools from many tasks (plan steps run concurrently), so each connection gets an *owner
task* that enters the contexts, reports ready, and waits for the close signal; callers only send
requests through the session. Closing sets the signal and awaits the owner, so the SDK's own
shutdown (close stdin, terminate, kill the process tree) runs in the right task and no child
process outlives the run.

Failures map onto the design's codes: a server that cannot be started, does not answer the
handshake in ``connect_timeout`` or goes away mid-run is TOOL_004; a call past ``timeout`` is
TOOL_003; a result flagged ``is_error`` is TOOL_002; arguments the server rejects are TOOL_005.
A connection that failed is dropped, so the next call starts a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import threading
from typing import Any

from sigil_core import ToolError

from .settings import ServerConfig

#: JSON-RPC codes (same values in mcp 1.x and 2.x).
CONNECTION_CLOSED = -32000
INVALID_PARAMS = -32602
_STDERR_TAIL = 400
#: How much of a server's stderr is kept (the end of it): enough to explain a failure, and a
#: server that writes without end cannot fill memory or the disk.
STDERR_KEEP = 64 * 1024

# The SDK logs every unparsable stdout line with a traceback; with no logging configured that
# reaches the terminal through logging's last-resort handler (1,600 lines for a noisy server).
# A library gets a NullHandler: the failure is reported once, as TOOL_004, by this module.
logging.getLogger("mcp").addHandler(logging.NullHandler())


class StderrBuffer:
    """A pipe for a child's stderr whose last ``limit`` bytes are kept in memory.

    ``file`` is what the SDK hands to the child; a daemon thread drains the pipe so the child
    never blocks on a full pipe, and the text never reaches the terminal.
    """

    def __init__(self, limit: int = STDERR_KEEP) -> None:
        read_fd, write_fd = os.pipe()
        self.file = os.fdopen(write_fd, "w", encoding="utf-8", errors="replace")
        self.limit = limit
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, args=(read_fd,), daemon=True,
                                        name="mcp-stderr")
        self._thread.start()

    def _drain(self, fd: int) -> None:
        try:
            while chunk := os.read(fd, 65536):
                with self._lock:
                    self._tail += chunk
                    if len(self._tail) > self.limit:
                        del self._tail[: len(self._tail) - self.limit]
        except OSError:
            pass
        finally:
            os.close(fd)

    def text(self) -> str:
        with self._lock:
            return self._tail.decode("utf-8", "replace")

    def close(self) -> None:
        """Close our end; the thread ends when the child's end closes too (it exits)."""
        with contextlib.suppress(OSError):
            self.file.close()


def secrets_of(server: ServerConfig) -> list[str]:
    """What must never be printed: the values of the server's ``env:`` and ``headers:``
    entries, and the API keys and tokens in Sigil's own environment."""
    values = [v for _, v in server.env] + [v for _, v in server.headers]
    values += [v for k, v in os.environ.items()
               if k.endswith(("_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD"))]
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, "***")
    return text


def _bad_line(exc: BaseException) -> str:
    """The stdout line the SDK could not parse, from its validation error."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        with contextlib.suppress(Exception):
            for err in errors():
                if isinstance(err.get("input"), (str, bytes)):
                    line = err["input"]
                    line = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
                    return line.strip()[:200]
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _field(obj: Any, *names: str, default: Any = None) -> Any:
    """Read a field under its mcp 2.x (snake_case) or 1.x (camelCase) name."""
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return default


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups from anyio task groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    exc = _leaf(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def tool_info(tool: Any) -> dict[str, Any]:
    """An MCP ``Tool`` listing entry as plain data (name, description, input_schema, and the
    annotations a resumed run reads: ``idempotentHint``, ``readOnlyHint``)."""
    notes = _field(tool, "annotations")
    return {
        "name": tool.name,
        "description": (_field(tool, "description") or "").strip(),
        "input_schema": _field(tool, "input_schema", "inputSchema", default={"type": "object"}),
        "annotations": {} if notes is None else {
            k: v for k, v in (("idempotentHint", _field(notes, "idempotentHint", "idempotent_hint")),
                              ("readOnlyHint", _field(notes, "readOnlyHint", "read_only_hint")))
            if v is not None},
    }


def result_value(result: Any) -> Any:
    """Turn a ``CallToolResult`` into plain data for the step: structured content when the
    server gives it, else the text blocks (JSON-decoded when they hold JSON)."""
    structured = _field(result, "structured_content", "structuredContent")
    if structured is not None:
        # Servers wrap non-object returns as {"result": value}; hand the value itself over.
        if isinstance(structured, dict) and list(structured) == ["result"]:
            return structured["result"]
        return structured
    items: list[Any] = []
    for block in _field(result, "content", default=[]) or []:
        if getattr(block, "type", None) == "text":
            text = block.text
            try:
                items.append(json.loads(text))
            except (ValueError, TypeError):
                items.append(text)
        else:
            dump = getattr(block, "model_dump", None)
            items.append(dump(mode="json", exclude_none=True) if dump else repr(block))
    if not items:
        return None
    return items[0] if len(items) == 1 else items


def result_error_text(result: Any) -> str:
    texts = [b.text for b in (_field(result, "content", default=[]) or [])
             if getattr(b, "type", None) == "text"]
    return " ".join(t.strip() for t in texts if t).strip() or "the tool reported an error"


class McpConnection:
    """One live session with one MCP server, owned by a background task."""

    def __init__(self, server: ServerConfig) -> None:
        self.server = server
        self.tools: dict[str, dict[str, Any]] = {}
        self.server_info: dict[str, Any] = {}
        self._session: Any = None
        self._owner: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._error: BaseException | None = None
        self._stderr: StderrBuffer | None = None
        #: The first stdout line that was not MCP (the server is then stopped).
        self.garbage: str | None = None
        self._secrets = secrets_of(server)
        #: Set when the connection can no longer be used (failed, died or closed).
        self.broken = False

    # ----------------------------------------------------------------- lifecycle

    async def connect(self) -> McpConnection:
        """Start the server (or reach it), initialise, list tools. TOOL_004 on any failure."""
        if self._owner is None:
            self._owner = asyncio.create_task(self._own(), name=f"mcp:{self.server.name}")
        try:
            await asyncio.wait_for(asyncio.shield(self._ready.wait()), self.server.connect_timeout)
        except TimeoutError:
            error = self._connect_error(f"no answer to the MCP handshake within "
                                        f"{self.server.connect_timeout:g}s")
            await self.close()
            raise error from None
        if self._error is not None or self._session is None:
            reason = (_describe(self._error) if self._error is not None
                      else "the server closed the connection")
            # The error (with the child's stderr) is built before close() discards the log.
            error = self._connect_error(reason)
            await self.close()
            raise error from None
        return self

    def _connect_error(self, reason: str) -> ToolError:
        self.broken = True
        if self.garbage is not None:
            reason = self._garbage_reason()
        tail = self.stderr_tail()
        detail = f" (server stderr: {tail})" if tail else ""
        return ToolError(
            redact(f"MCP server {self.server.name!r} ({self.server.describe()}) could not be "
                   f"connected: {reason}{detail}", self._secrets),
            code="TOOL_004",
            context={"tool_server": self.server.name, "transport": self.server.transport},
        )

    async def _own(self) -> None:
        from mcp import ClientSession

        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                session = await stack.enter_async_context(
                    ClientSession(read, write, message_handler=self._on_message))
                init = await session.initialize()
                info = _field(init, "server_info", "serverInfo")
                if info is not None:
                    self.server_info = {"name": info.name, "version": getattr(info, "version", None)}
                listing = await session.list_tools()
                self.tools = {t.name: tool_info(t) for t in listing.tools}
                self._session = session
                self._ready.set()
                await self._closing.wait()
        except asyncio.CancelledError:
            pass  # close() cancelled a handshake that never finished; the SDK reaped the child
        except BaseException as exc:  # noqa: BLE001 - reported as TOOL_004 to the caller
            self._error = exc
        finally:
            self._session = None
            self.broken = True
            self._ready.set()

    async def _on_message(self, message: Any) -> None:
        """The SDK hands over what it could not read from the server as an Exception: a
        server that writes anything but MCP on stdout is stopped, and its first bad line kept
        for the one TOOL_004 that reports it."""
        if isinstance(message, Exception) and self.garbage is None:
            self.garbage = redact(_bad_line(message), self._secrets)
            self.broken = True
            self._closing.set()
            self._ready.set()

    def call_error_for_garbage(self) -> ToolError:
        return ToolError(f"MCP server {self.server.name!r}: {self._garbage_reason()}",
                         code="TOOL_004", context={"tool_server": self.server.name})

    def _garbage_reason(self) -> str:
        return (f"it wrote something that is not MCP on stdout (first bad line: "
                f"{self.garbage!r}); the server was stopped")

    def _transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        server = self.server
        if server.url:
            return _http_transport(server)
        from mcp import StdioServerParameters, stdio_client

        # The child's stderr goes to a bounded buffer we keep: its tail explains a server that
        # fails to start, and the user's terminal stays clean.
        self._stderr = StderrBuffer()
        params = StdioServerParameters(
            command=server.command or "", args=list(server.args), env=dict(server.env) or None,
            cwd=server.cwd,
        )
        return stdio_client(params, errlog=self._stderr.file)

    def stderr_tail(self) -> str:
        """The last lines of the server's stderr, secrets redacted."""
        if self._stderr is None:
            return ""
        lines = [line for line in self._stderr.text().strip().splitlines() if line.strip()]
        return redact(" | ".join(lines[-3:]), self._secrets)[-_STDERR_TAIL:]

    async def close(self) -> None:
        """Stop the server and release everything; safe to call twice."""
        self.broken = True
        self._closing.set()
        owner = self._owner
        if owner is not None and not owner.done():
            if self._session is None:
                owner.cancel()  # still in the handshake: nothing to wind down politely
            with contextlib.suppress(asyncio.CancelledError, Exception):
                # Bounded: the SDK's shutdown escalates to a kill within a few seconds.
                await asyncio.wait_for(asyncio.shield(owner), 15)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # ----------------------------------------------------------------- calls

    async def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Call one tool; returns plain data or raises ToolError (TOOL_002..TOOL_005)."""
        session = self._session
        ctx = {"tool_server": self.server.name, "tool_name": tool}
        if session is None or self.broken:
            why = f": {self._garbage_reason()}" if self.garbage is not None else ""
            raise ToolError(f"MCP server {self.server.name!r} is not connected{why}",
                            code="TOOL_004", context=ctx)
        try:
            result = await asyncio.wait_for(session.call_tool(tool, arguments), self.server.timeout)
        except TimeoutError:
            raise ToolError(
                f"tool {tool!r} on MCP server {self.server.name!r} timed out after "
                f"{self.server.timeout:g}s",
                code="TOOL_003", context=ctx,
            ) from None
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001
            error = self._call_error(tool, exc, ctx)
            if self.broken:
                # The server went away: reap it now rather than at the end of the run.
                await self.close()
            raise error from None
        if _field(result, "is_error", "isError", default=False):
            raise ToolError(f"tool {tool!r} on MCP server {self.server.name!r} failed: "
                            f"{result_error_text(result)}", code="TOOL_002", context=ctx)
        return result_value(result)

    def _call_error(self, tool: str, exc: BaseException, ctx: dict[str, Any]) -> ToolError:
        leaf = _leaf(exc)
        code = getattr(getattr(leaf, "error", None), "code", None)
        if code == INVALID_PARAMS:
            return ToolError(f"MCP server {self.server.name!r} rejected the arguments of {tool!r}: "
                             f"{_describe(leaf)}", code="TOOL_005", context=ctx)
        if code is not None and code != CONNECTION_CLOSED:
            return ToolError(f"tool {tool!r} on MCP server {self.server.name!r} failed: "
                             f"{_describe(leaf)}", code="TOOL_002", context=ctx)
        # Connection closed, broken pipe, dead process: this session is over.
        self.broken = True
        if self.garbage is not None:
            return ToolError(f"MCP server {self.server.name!r} failed during {tool!r}: "
                             f"{self._garbage_reason()}", code="TOOL_004", context=ctx)
        tail = self.stderr_tail()
        detail = f" (server stderr: {tail})" if tail else ""
        return ToolError(redact(f"MCP server {self.server.name!r} went away during {tool!r}: "
                                f"{_describe(leaf)}{detail}", self._secrets),
                         code="TOOL_004", context=ctx)


@contextlib.asynccontextmanager
async def _http_transport(server: ServerConfig) -> Any:
    """Streamable HTTP across SDK versions (2.x takes an httpx client for headers)."""
    from mcp.client import streamable_http as sh

    headers = dict(server.headers)
    url = str(server.url)  # checked present for the http transport when the config was read
    # The SDK's names are looked up at run time: each branch exists in one major version only.
    if hasattr(sh, "streamable_http_client"):
        client = None
        if headers:
            factory = vars(sh)["create_mcp_http_client"]
            client = factory(headers=headers)
        async with sh.streamable_http_client(url, http_client=client) as streams:
            yield streams[0], streams[1]
        return
    async with vars(sh)["streamablehttp_client"](url, headers=headers or None) as streams:  # 1.x
        yield streams[0], streams[1]


class SessionPool:
    """The connections of one run (or one CLI command), by server name.

    ``get`` connects on first use and reuses the session afterwards; a broken connection is
    replaced on the next call. ``aclose`` stops every server.
    """

    #: A server that failed to connect is not started again for this long (seconds): the
    #: next calls of the same step get the same TOOL_004 at once instead of another spawn.
    RETRY_AFTER = 5.0

    def __init__(self, servers: dict[str, ServerConfig]) -> None:
        self.servers = servers
        self._failed: dict[str, tuple[float, ToolError]] = {}
        self._connections: dict[str, McpConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.closed = False
        #: How many connections were opened (reuse is visible in tests and the benchmark).
        self.connects = 0

    async def get(self, server_name: str) -> McpConnection:
        if self.closed:
            raise ToolError(f"the tool sessions of this run are closed (server {server_name!r})",
                            code="TOOL_004")
        server = self.servers.get(server_name)
        if server is None:
            known = ", ".join(sorted(self.servers)) or "none configured"
            raise ToolError(f"unknown MCP server {server_name!r} (known: {known})", code="TOOL_001")
        lock = self._locks.setdefault(server_name, asyncio.Lock())
        async with lock:
            conn = self._connections.get(server_name)
            if conn is not None and not conn.broken:
                return conn
            loop = asyncio.get_running_loop()
            if conn is not None:
                await conn.close()
                if conn.garbage is not None:
                    # A server that writes garbage is not started again in this run.
                    self._failed[server_name] = (math.inf, conn.call_error_for_garbage())
            failed = self._failed.get(server_name)
            if failed is not None and loop.time() - failed[0] < self.RETRY_AFTER:
                raise failed[1]
            conn = McpConnection(server)
            self._connections[server_name] = conn
            self.connects += 1
            try:
                return await conn.connect()
            except ToolError as exc:
                if conn.garbage is not None:
                    self._failed[server_name] = (math.inf, exc)
                    raise
                exc.retry_after_ms = int(self.RETRY_AFTER * 1000)
                self._failed[server_name] = (loop.time(), exc)
                raise

    def connection(self, server_name: str) -> McpConnection | None:
        return self._connections.get(server_name)

    async def aclose(self) -> None:
        self.closed = True
        connections = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
