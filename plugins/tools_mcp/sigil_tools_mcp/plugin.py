"""Hook implementations of the tools_mcp plugin (entry point ``tools_mcp``, group ``sigil``).

Module import stays light (no mcp, no jsonschema): ``sigil --help`` loads this module.
"""

from __future__ import annotations

import sys
from typing import Any

from sigil_core import hookimpl


@hookimpl
def sigil_register_tools(register: Any, config: Any) -> None:
    """The builtin Python tools, then every allowed tool of the configured MCP servers.

    ``config`` is the run's (or the command's) config, handed over by the host."""
    from sigil_core import SigilError

    from . import sessions
    from .builtin import builtin_tools
    from .settings import servers_from_config

    for tool in builtin_tools():
        register(tool)
    try:
        servers = servers_from_config(config)
    except SigilError as exc:
        # The CLI reports a broken config file itself; a bad mcp_servers entry only costs
        # the MCP tools, with the reason.
        print(f"warning: tools_mcp: {exc}; MCP tools are not registered", file=sys.stderr)
        return
    sessions.default_servers.clear()
    sessions.default_servers.update(servers)
    if not servers:
        return
    from .tools import mcp_tools

    for tool in mcp_tools(servers, config.home):
        register(tool)


@hookimpl
def sigil_register_strategies(register: Any) -> None:
    """The ``react`` strategy (complexity 0.7–0.9 in the design's table)."""
    from .react import ReactStrategy

    register(ReactStrategy())


@hookimpl
def sigil_register_commands(cli: Any) -> None:
    """``sigil tools list`` and ``sigil tools call``."""
    from .cli import tools_group

    cli.add_command(tools_group)


@hookimpl
def sigil_config_sections() -> list[str]:
    """The config sections this plugin reads."""
    return ["mcp_servers", "react"]
