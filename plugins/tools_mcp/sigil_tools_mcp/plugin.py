"""Hook implementations of the tools_mcp plugin (entry point ``tools_mcp``, group ``sigil``).

Module import stays light (no mcp, no jsonschema): ``sigil --help`` loads this module.
"""

from __future__ import annotations

import sys
from typing import Any

from sigil_core import hookimpl


@hookimpl
def sigil_register_tools(register: Any) -> None:
    """The builtin Python tools, then every allowed tool of the configured MCP servers."""
    from . import sessions
    from .builtin import builtin_tools
    from .config import servers_from_config

    for tool in builtin_tools():
        register(tool)
    from sigil_core.config import load_config
    from sigil_core.errors import SigilError

    try:
        config = load_config()
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


# The two hooks below never answer (they return None, so the next implementation decides);
# they bind the run to the current context so that tool calls made during it find the run's
# MCP sessions, which close with the run (``run.on_close``).


@hookimpl(tryfirst=True)
def sigil_route(run: Any) -> None:
    """Bind the run (first phase: the binding reaches every task the run starts later)."""
    from . import sessions

    sessions.bind_run(run)


@hookimpl(tryfirst=True)
def sigil_reason(run: Any, step: Any) -> None:
    """Bind the run again in each step's task (in case the step tasks predate routing), and
    route steps that require tools to ``react`` so tool results feed the step's answer.

    The orchestrator gives every step the strategy of its complexity label; a step with
    ``tools_required`` would then have its tools called after reasoning, with empty arguments,
    and their results would not reach its answer. A step whose strategy is that default and
    simpler than react is switched to react. Switch this off with ``react: {tool_steps: false}``.
    """
    from . import sessions

    sessions.bind_run(run)
    if not step.tools_required:
        return
    settings = run.config.section("react") if hasattr(run.config, "section") else {}
    if not settings.get("tool_steps", True):
        return
    from sigil_core.strategies import STRATEGY_ORDER, strategy_for_step

    installed = run.registry("strategies")
    default = strategy_for_step(step.complexity, installed)
    current = step.reasoning_strategy
    if "react" in installed and current in (None, default) and current in STRATEGY_ORDER[:3] + (None,):
        step.reasoning_strategy = "react"
