"""An MCP server written with the official SDK, for the error cases of the tools_mcp tests.

Run as a script: ``python tools_mcp_fake_server.py [MODE] [PORT]``. MODE ``stdio`` (default)
serves over stdin/stdout, ``http`` serves streamable HTTP on 127.0.0.1:PORT, ``crash`` exits at
once with a message on stderr, ``mute`` starts but never answers the handshake.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from mcp.types import ToolAnnotations

try:  # mcp 2.x
    from mcp.server.mcpserver import MCPServer as Server
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as Server
    from mcp.server.fastmcp.exceptions import ToolError

app = Server("sigil-test")


@app.tool(annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=True))
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@app.tool()
def fail(message: str) -> str:
    """Always fails with the given message (an anticipated failure: the client sees it)."""
    raise ToolError(message)


@app.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@app.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@app.tool()
def die() -> str:
    """Kill the server process mid-call."""
    sys.stderr.write("fake server: dying on request\n")
    sys.stderr.flush()
    os._exit(3)


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "crash":
        sys.stderr.write("fake server: cannot start (missing API key FAKE_KEY)\n")
        sys.exit(1)
    if mode == "garbage":  # a server that logs to stdout: not MCP
        for i in range(300):
            print(f"INFO starting worker {i} {{not json", flush=True)
        app.run()
        return
    if mode == "secret":  # a failing server that prints its credentials
        sys.stderr.write(f"fake server: auth failed for key {os.environ.get('FAKE_SECRET')} "
                         f"(sigil's key {os.environ.get('ANTHROPIC_API_KEY')})\n")
        sys.exit(1)
    if mode == "flood":  # megabytes of stderr, then a failure
        for _ in range(5000):
            sys.stderr.write("x" * 1023 + "\n")
        sys.stderr.write("fake server: flood done, giving up\n")
        sys.exit(1)
    if mode == "mute":
        while True:
            time.sleep(1)
    if mode == "http":
        port = int(sys.argv[2])
        try:
            app.run(transport="streamable-http", host="127.0.0.1", port=port)
        except TypeError:  # mcp 1.x: host/port are settings
            app.settings.host, app.settings.port = "127.0.0.1", port
            app.run(transport="streamable-http")
        return
    app.run()


if __name__ == "__main__":
    main()
