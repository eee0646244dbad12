"""Hook implementations. Kept light: nothing heavy is imported until a command or run needs it."""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl
def sigil_register_monitor_transports(register: Any) -> None:
    """The WebSocket transport, started by ``sigil orchestrate --monitor``."""
    from .transport import WebSocketMonitorTransport

    register(WebSocketMonitorTransport())


@hookimpl
def sigil_register_commands(cli: Any) -> None:
    """``sigil monitor`` (client, ``--files``) and ``sigil monitor serve``."""
    from .cli import monitor

    cli.add_command(monitor)
