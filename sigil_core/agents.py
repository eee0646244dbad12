"""Agent definitions: registered by plugins, or saved as YAML under ``<home>/agents``.

One file per agent, ``<home>/agents/<name>.yaml``, holding the fields of
:class:`~sigil_core.model.Agent`. Saving a new version moves the previous one to
``<home>/agents/.history/<name>.v<N>.yaml``, so nothing is ever lost.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UsageError
from .files import private_mkdir
from .model import Agent, structure, unstructure

if TYPE_CHECKING:
    from .config import Config
    from .plugins import PluginHost

AGENT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def validate_agent_name(name: str) -> str:
    if not isinstance(name, str) or not AGENT_NAME.match(name):
        raise UsageError(
            f"invalid agent name {name!r}: use lowercase letters, digits, '_' or '-', starting "
            "with a letter (at most 64 characters)")
    return name


def agent_path(config: Config, name: str) -> Path:
    return config.agents_dir / f"{validate_agent_name(name)}.yaml"


def read_agent_file(path: Path) -> Agent:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read agent file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"agent file {path} is not valid YAML: "
                         f"{str(exc).splitlines()[0]}. Fix or remove it.") from None
    if not isinstance(data, dict):
        raise UsageError(f"agent file {path} must hold a mapping of agent fields")
    data.setdefault("name", path.stem)
    try:
        agent = structure(data, Agent, what=f"agent file {path}")
    except ValueError as exc:
        raise UsageError(f"{exc}. Fix or remove the file.") from None
    if agent.name != path.stem:
        raise UsageError(f"agent file {path} names the agent {agent.name!r}; the file name and "
                         "the name must match")
    agent.source = str(path)
    return agent


def load_agents(config: Config, host: PluginHost,
                broken: dict[str, str] | None = None) -> dict[str, Agent]:
    """Registered agents, overridden by the files in the agents directory.

    A file that cannot be read (bad YAML, a symlink loop, unreadable) raises UsageError, unless
    ``broken`` is given: then its name and the reason go there and the other agents still load.
    """
    agents: dict[str, Agent] = dict(host.registry("agents"))
    folder = config.agents_dir
    if folder.is_dir():
        for path in sorted(folder.glob("*.yaml")):
            if AGENT_NAME.match(path.stem):
                try:
                    agents[path.stem] = read_agent_file(path)
                except UsageError as exc:
                    if broken is None:
                        raise
                    broken[path.stem] = exc.message
    return agents


def get_agent(config: Config, host: PluginHost, name: str) -> Agent:
    validate_agent_name(name)
    path = config.agents_dir / f"{name}.yaml"
    if path.exists():
        return read_agent_file(path)
    registered = host.registry("agents")
    if name in registered:
        agent: Agent = registered[name]
        return agent
    known = sorted(load_agents(config, host))
    raise UsageError(f"unknown agent {name!r}; known agents: {', '.join(known) or 'none'} "
                     "(see `sigil agents list`)")


def save_agent(config: Config, agent: Agent, previous: Agent | None = None) -> Path:
    """Write the agent atomically; the previous version is kept under .history.

    The previous version is the agent's file when there is one, else ``previous`` (e.g. the
    registered builtin that this agent modifies).
    """
    path = agent_path(config, agent.name)
    private_mkdir(path.parent)
    history = path.parent / ".history"
    if path.exists():
        old = read_agent_file(path)
        private_mkdir(history)
        os.replace(path, history / f"{agent.name}.v{old.version}.yaml")
        agent.version = max(agent.version, old.version + 1)
    elif previous is not None:
        private_mkdir(history)
        _write_yaml(history / f"{agent.name}.v{previous.version}.yaml", previous)
        agent.version = max(agent.version, previous.version + 1)
    _write_yaml(path, agent)
    return path


def _write_yaml(path: Path, agent: Agent) -> None:
    import yaml

    data = unstructure(agent)
    data.pop("source", None)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False, allow_unicode=True)
    os.replace(tmp, path)
