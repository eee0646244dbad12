"""`sigil agents list | show NAME | remove NAME`.

Only click is imported at module level: these commands are added on every `sigil` start.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _context() -> tuple[Any, Any]:
    from sigil_core import command_config, command_host

    return command_config(), command_host()


def _definition(agent: Any) -> dict[str, Any]:
    from sigil_core import unstructure

    data = unstructure(agent)
    data.pop("source", None)
    return data


def _history(config: Any, name: str) -> list[str]:
    folder = config.agents_dir / ".history"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.glob(f"{name}.*.yaml"))


@click.group()
def agents() -> None:
    """List, show and remove agent definitions (saved under <SIGIL_HOME>/agents)."""


@agents.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def agents_list(as_json: bool) -> None:
    """List agents: builtin, from plugins and saved ones (a saved file overrides a builtin)."""
    from sigil_core import UsageError, load_agents

    config, host = _context()
    broken: dict[str, str] = {}
    try:
        found = load_agents(config, host, broken=broken)
    except UsageError as exc:
        _fail(str(exc))
    rows: list[dict[str, Any]] = [{"name": a.name, "version": a.version,
             "source": "saved" if a.source not in ("builtin",) and a.source.endswith(".yaml")
             else a.source,
             "contract": a.contract, "tools": a.tools, "description": a.description}
            for a in found.values() if a.name not in broken]
    # One bad file is listed as broken, with why; it never hides the other agents.
    rows += [{"name": name, "version": None, "source": "broken", "contract": None, "tools": [],
              "description": None, "error": reason} for name, reason in broken.items()]
    rows.sort(key=lambda r: r["name"])
    for name, reason in sorted(broken.items()):
        click.echo(f"warning: agent {name!r} is broken: {reason}", err=True)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No agents.")
        return
    from sigil_core import print_table, shorten, table

    t = table("name", "version", "source", "contract", "description", wrap=(4,))
    for r in rows:
        t.add_row(r["name"], f"v{r['version']}" if r["version"] else "-", r["source"],
                  r["contract"] or "-", shorten(r["description"] or r.get("error") or "", 100))
    print_table(t)


@agents.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def agents_show(name: str, as_json: bool) -> None:
    """Show one agent's definition, where it comes from and its kept versions."""
    import yaml

    from sigil_core import UsageError, get_agent

    config, host = _context()
    try:
        agent = get_agent(config, host, name)
    except UsageError as exc:
        _fail(str(exc))
    data = _definition(agent)
    data["source"] = agent.source
    data["history"] = _history(config, agent.name)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())


@agents.command("remove")
@click.argument("name")
def agents_remove(name: str) -> None:
    """Remove a saved agent. Its file moves to .history, so the versions stay recoverable;
    a builtin agent it overrode comes back."""
    import os
    import time

    from sigil_core import UsageError, read_agent_file, validate_agent_name

    config, host = _context()
    try:
        validate_agent_name(name)
    except UsageError as exc:
        _fail(str(exc))
    path = config.agents_dir / f"{name}.yaml"
    registered = host.registry("agents")
    if not path.exists():
        if name in registered:
            _fail(f"agent {name!r} is registered by a plugin (builtins included) and cannot be "
                  "removed; disable that plugin instead")
        _fail(f"unknown agent {name!r}; see `sigil agents list`")
    try:
        label = f"v{read_agent_file(path).version}"
    except UsageError:
        # A broken file can still be removed: that is how the user gets rid of it.
        label = "broken"
    history = config.agents_dir / ".history"
    history.mkdir(parents=True, exist_ok=True)
    target = history / f"{name}.{label}.yaml"
    if target.exists():
        target = history / f"{name}.{label}.removed-{int(time.time())}.yaml"
    os.replace(path, target)
    back = " (the builtin definition applies again)" if name in registered else ""
    click.echo(f"Removed agent {name}{back}; its file was kept as {target}")
