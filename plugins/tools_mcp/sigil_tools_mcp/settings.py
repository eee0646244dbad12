"""The ``mcp_servers:`` section of the Sigil config file.

Each entry names one MCP server::

    mcp_servers:
      time:                          # the server's name: tools register as "time.<tool>"
        command: uvx                 # stdio: the program to start ...
        args: [mcp-server-time]      # ... and its arguments
        env: {TZ: UTC}               # extra environment for the child (``${VAR}`` is expanded)
        timeout: 30                  # seconds per tool call (TOOL_003 past it)
        connect_timeout: 20          # seconds to start and initialise (TOOL_004 past it)
        allow: [get_current_time]    # optional allow-list of the server's tools
      search:
        url: http://127.0.0.1:9000/mcp   # streamable HTTP instead of stdio

Bad entries are a :class:`~sigil_core.errors.ConfigError` naming the key, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

import attrs

from sigil_core import ConfigError

SECTION = "mcp_servers"
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 20.0
#: Server names become tool-name prefixes, so they must be plain identifiers.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: Reserved for the plugin's own Python tools.
BUILTIN_SERVER = "builtin"
_KEYS = {"command", "args", "env", "url", "headers", "timeout", "connect_timeout", "allow", "cwd",
         "enabled"}


@attrs.frozen
class ServerConfig:
    """One configured MCP server."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    #: None allows every tool the server lists.
    allow: tuple[str, ...] | None = None

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"

    def allows(self, tool: str) -> bool:
        return self.allow is None or tool in self.allow

    def fingerprint(self) -> str:
        """Identifies what is started/reached, so a cached tool listing is dropped when it changes."""
        blob = json.dumps([self.command, list(self.args), sorted(self.env), self.url, self.cwd])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> str:
        if self.url:
            return self.url
        return " ".join([self.command or "", *self.args]).strip()


def _expand(value: str) -> str:
    # ${VAR} / $VAR from the environment, so secrets stay out of the config file.
    return os.path.expandvars(value)


def _number(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{SECTION}.{name}.{key}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _str_map(name: str, key: str, value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ConfigError(f"{SECTION}.{name}.{key}: expected a mapping of names to strings")
    out = []
    for k, v in value.items():
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            raise ConfigError(f"{SECTION}.{name}.{key}.{k}: expected a string, got {v!r}")
        out.append((str(k), _expand(str(v))))
    return tuple(out)


def parse_server(name: Any, raw: Any) -> ServerConfig | None:
    """Validate one entry; None when it is switched off with ``enabled: false``."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name == BUILTIN_SERVER:
        raise ConfigError(
            f"{SECTION}: invalid server name {name!r}: use letters, digits, '-' or '_' "
            f"(and not {BUILTIN_SERVER!r}, which names the builtin tools)"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{SECTION}.{name}: expected a mapping with 'command' or 'url'")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(
            f"{SECTION}.{name}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(_KEYS))}"
        )
    if raw.get("enabled", True) is False:
        return None
    command, url = raw.get("command"), raw.get("url")
    if bool(command) == bool(url):
        raise ConfigError(f"{SECTION}.{name}: give exactly one of 'command' (stdio) or 'url' (HTTP)")
    if command is not None and not isinstance(command, str):
        raise ConfigError(f"{SECTION}.{name}.command: expected a string")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        raise ConfigError(f"{SECTION}.{name}.url: expected an http:// or https:// URL, got {url!r}")
    args = raw.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
        raise ConfigError(f"{SECTION}.{name}.args: expected a list of strings")
    allow = raw.get("allow")
    if allow is not None and (not isinstance(allow, list) or not all(isinstance(a, str) for a in allow)):
        raise ConfigError(f"{SECTION}.{name}.allow: expected a list of tool names")
    cwd = raw.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise ConfigError(f"{SECTION}.{name}.cwd: expected a directory path")
    return ServerConfig(
        name=name,
        command=_expand(command) if command else None,
        args=tuple(_expand(str(a)) for a in args),
        env=_str_map(name, "env", raw.get("env")),
        url=url,
        headers=_str_map(name, "headers", raw.get("headers")),
        cwd=os.path.expanduser(cwd) if cwd else None,
        timeout=_number(name, "timeout", raw.get("timeout", DEFAULT_TIMEOUT)),
        connect_timeout=_number(name, "connect_timeout",
                                raw.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)),
        allow=tuple(allow) if allow is not None else None,
    )


def parse_servers(section: Any) -> dict[str, ServerConfig]:
    """All enabled servers of the ``mcp_servers`` section, by name."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(f"{SECTION}: expected a mapping of server names to settings")
    servers = {}
    for name, raw in section.items():
        server = parse_server(name, raw)
        if server is not None:
            servers[name] = server
    return servers


def servers_from_config(config: Any) -> dict[str, ServerConfig]:
    """The servers of a loaded :class:`sigil_core.Config`."""
    return parse_servers(config.sections.get(SECTION))
