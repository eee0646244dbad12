"""``sigil tools``: list every registered tool, call one by hand.

Only click is imported at module level; the commands import the rest when they run.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

#: Exit codes of the core CLI: 1 the action failed, 2 bad input.
EXIT_FAILED = 1
EXIT_USAGE = 2


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _load() -> tuple[Any, Any]:
    from sigil_core import SigilError, load_config

    from .settings import servers_from_config

    try:
        config = load_config()
        servers = servers_from_config(config)
    except SigilError as exc:
        _fail(str(exc), EXIT_USAGE)
    return config, servers


def _registry(config: Any) -> dict[str, Any]:
    from sigil_core import PluginHost

    disabled = getattr(getattr(config, "plugins", None), "disabled", ()) or ()
    return PluginHost(disabled=disabled).load().registry("tools")


def _row(tool: Any) -> dict[str, Any]:
    return {
        "name": tool.name,
        "server": getattr(tool, "server", None),
        "tool_name": getattr(tool, "tool_name", tool.name),
        "description": getattr(tool, "description", ""),
        "input_schema": getattr(tool, "input_schema", {}),
    }


@click.group(name="tools")
def tools_group() -> None:
    """Tools that plan steps can use: builtin Python tools and MCP servers' tools."""


@tools_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--server", "only", multiple=True, help="Only this server (repeatable).")
def list_tools(as_json: bool, only: tuple[str, ...]) -> None:
    """List every registered tool with its input schema.

    MCP servers from the `mcp_servers:` config section are connected now (concurrently),
    so the list is live; it also refreshes the cached listings that runs register from.
    """
    import asyncio

    from . import catalog

    config, servers = _load()
    unknown = [s for s in only if s not in servers and s != "builtin"]
    if unknown:
        known = ", ".join(["builtin", *sorted(servers)])
        _fail(f"unknown server {unknown[0]!r}; known: {known}", EXIT_USAGE)
    live = asyncio.run(catalog.list_live(servers)) if servers else {}
    errors: dict[str, str] = {}
    for name, value in live.items():
        if isinstance(value, Exception):
            errors[name] = f"{value.code}: {value.message}"
        else:
            catalog.remember(config.home, servers[name], value["tools"])
    from . import tools as tools_module

    tools_module.DISCOVER_ON_REGISTER = False
    rows = [_row(t) for t in _registry(config).values()]
    # A failed server may still have a cached listing: show only what was listed live.
    rows = [r for r in rows if r["server"] not in errors]
    if only:
        rows = [r for r in rows if r["server"] in only]
        errors = {k: v for k, v in errors.items() if k in only}
    rows.sort(key=lambda r: (r["server"] or "", r["name"]))
    if as_json:
        click.echo(json.dumps({"tools": rows, "errors": errors}, indent=2, ensure_ascii=False))
    else:
        if not rows:
            click.echo("No tools registered.")
        for row in rows:
            where = f"server: {row['server']}" if row["server"] else "plugin tool"
            click.echo(f"{row['name']}  ({where})")
            if row["description"]:
                click.echo(f"  {row['description']}")
            click.echo(f"  input schema: {json.dumps(row['input_schema'], ensure_ascii=False)}")
        for name, message in sorted(errors.items()):
            click.echo(f"{name}: unavailable ({message})", err=True)
    if errors:
        sys.exit(EXIT_FAILED)


@tools_group.command(name="call")
@click.argument("server")
@click.argument("tool")
@click.option("--args", "args_json", default="{}", show_default=True,
              help="The tool's arguments as a JSON object.")
def call_tool(server: str, tool: str, args_json: str) -> None:
    """Call TOOL of SERVER by hand and print its result as JSON.

    SERVER is a name from the `mcp_servers:` config section, or `builtin` for the
    builtin Python tools (calculator, current_time).
    """
    import asyncio

    from sigil_core import ToolError

    try:
        arguments = json.loads(args_json)
    except ValueError as exc:
        _fail(f"--args is not valid JSON ({exc}); pass an object such as "
              f"'{{\"expression\": \"2+2\"}}'", EXIT_USAGE)
    if not isinstance(arguments, dict):
        _fail("--args must be a JSON object, e.g. '{\"timezone\": \"UTC\"}'", EXIT_USAGE)
    config, servers = _load()
    try:
        if server in servers:
            value = asyncio.run(_call_mcp(servers[server], tool, arguments))
        else:
            value = asyncio.run(_call_registered(config, server, tool, arguments, servers))
    except ToolError as exc:
        code = EXIT_USAGE if exc.code in ("TOOL_001", "TOOL_005") else EXIT_FAILED
        _fail(f"{exc.code}: {exc.message}", code)
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


async def _call_mcp(server: Any, tool: str, arguments: dict[str, Any]) -> Any:
    from sigil_core import ToolError

    from .client import SessionPool
    from .tools import validate_arguments

    if not server.allows(tool):
        raise ToolError(f"tool {tool!r} is not in the allow-list of MCP server {server.name!r} "
                        f"({', '.join(server.allow or [])})", code="TOOL_001")
    pool = SessionPool({server.name: server})
    try:
        conn = await pool.get(server.name)
        info = conn.tools.get(tool)
        if info is None:
            raise ToolError(f"MCP server {server.name!r} has no tool {tool!r} (it lists: "
                            f"{', '.join(sorted(conn.tools)) or 'none'})", code="TOOL_001")
        validate_arguments(info["input_schema"] or {}, arguments, f"{server.name}.{tool}")
        return await conn.call(tool, arguments)
    finally:
        await pool.aclose()


async def _call_registered(config: Any, server: str, tool: str, arguments: dict[str, Any],
                           servers: dict[str, Any]) -> Any:
    from sigil_core import ToolError

    from .builtin import builtin_tools
    from .tools import validate_arguments

    if server == "builtin":
        # The plugin's own tools: no need to load every plugin (or start MCP servers).
        registry = {t.name: t for t in builtin_tools()}
        if not any(t.tool_name == tool for t in registry.values()):
            raise ToolError(f"server 'builtin' has no tool {tool!r} (it has: "
                            f"{', '.join(sorted(registry))})", code="TOOL_001")
    else:
        registry = _registry(config)
    matches = [t for t in registry.values()
               if getattr(t, "server", None) == server and getattr(t, "tool_name", t.name) == tool]
    if not matches:
        known = sorted({getattr(t, "server", None) or "?" for t in registry.values()} | set(servers))
        if not any(getattr(t, "server", None) == server for t in registry.values()):
            raise ToolError(f"unknown server {server!r}; known: {', '.join(known)}",
                            code="TOOL_001")
        names = sorted(getattr(t, "tool_name", t.name) for t in registry.values()
                       if getattr(t, "server", None) == server)
        raise ToolError(f"server {server!r} has no tool {tool!r} (it has: {', '.join(names)})",
                        code="TOOL_001")
    found = matches[0]
    validate_arguments(getattr(found, "input_schema", {}) or {}, arguments, found.name)
    return await found.call(arguments)
