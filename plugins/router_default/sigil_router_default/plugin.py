"""The router_default plugin's hook implementations.

Kept light: the classifier and handlers are imported when a hook runs, so loading the plugin
(every `sigil` start, `--help` included) costs almost nothing.
"""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl
async def sigil_route(run: Any, task: str) -> Any:
    """Fast path (0 tokens) when the local classifier is confident, else one LLM call."""
    from .router import route

    return await route(run, task)


@hookimpl
async def sigil_handle_intent(run: Any, task: str, route: Any) -> Any:
    """Answer simple queries directly, create and modify agents; None for execute_task."""
    from .handlers import handle

    return await handle(run, task, route)


@hookimpl
def sigil_register_commands(cli: Any) -> None:
    """`sigil agents list | show NAME | remove NAME`."""
    from .cli import agents

    cli.add_command(agents)


@hookimpl
def sigil_config_sections() -> list[str]:
    """The config sections this plugin reads."""
    return ["router"]
