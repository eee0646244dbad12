"""Tool objects: MCP server tools, registered as ``<server>.<tool>``.

Every object has the core's Tool shape (``name``, ``description``, ``input_schema``,
``async call(arguments)``) plus ``server`` and ``tool_name``, which the core puts into the
``tools`` events as ``tool_server`` and ``tool_name``. Registry names are qualified by the
server name so two servers can both have a ``search`` tool; the builtin Python tools
(:mod:`sigil_tools_mcp.builtin`) keep plain names (``calculator``, ``current_time``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sigil_core import ToolError

from . import catalog, sessions
from .settings import ServerConfig

#: Used until the server is connected when only an allow-list names the tool.
OPEN_SCHEMA: dict[str, Any] = {"type": "object"}
#: Registration may start servers with no cached listing; commands that have just listed
#: every server live switch it off so a failing server is not started twice.
DISCOVER_ON_REGISTER = True


def qualified(server: str, tool: str) -> str:
    return f"{server}.{tool}"


_validators: dict[int, tuple[dict[str, Any], Any]] = {}


def _validator(schema: dict[str, Any]) -> Any:
    # Building a validator costs far more than validating; schemas are long-lived objects.
    cached = _validators.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)  # a server's broken schema is TOOL_005, not a crash
    validator = cls(schema)
    if len(_validators) > 1024:
        _validators.clear()
    _validators[id(schema)] = (schema, validator)
    return validator


def validate_arguments(schema: dict[str, Any], arguments: Any, name: str) -> None:
    """TOOL_005 when ``arguments`` do not match ``schema`` (the message names the path)."""
    import jsonschema

    if not isinstance(arguments, dict):
        raise ToolError(f"arguments for {name!r} must be a JSON object, got "
                        f"{type(arguments).__name__}", code="TOOL_005")
    try:
        _validator(schema).validate(arguments)
    except jsonschema.ValidationError as exc:
        path = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        raise ToolError(f"invalid arguments for {name!r} at {path}: {exc.message}",
                        code="TOOL_005", context={"tool_name": name}) from None
    except jsonschema.SchemaError as exc:
        raise ToolError(f"tool {name!r} has an invalid input schema: {exc.message}",
                        code="TOOL_005", context={"tool_name": name}) from None


class McpTool:
    """A tool of a configured MCP server; its session is opened on the first call."""

    def __init__(self, server: ServerConfig, info: dict[str, Any], *, home: Path,
                 schema_known: bool = True) -> None:
        self.server = server.name
        self.tool_name = info["name"]
        self.name = qualified(server.name, self.tool_name)
        self.description = info.get("description") or f"{self.tool_name} (MCP server {server.name})"
        self.input_schema: dict[str, Any] = dict(OPEN_SCHEMA)
        #: The server's MCP hints; ``idempotentHint``/``readOnlyHint`` let a resumed session
        #: run a call again whose result an earlier attempt did not record.
        self.annotations: dict[str, Any] = dict(info.get("annotations") or {})
        #: Why the server's declared schema is unusable (invalid JSON Schema), if it is.
        self.schema_error: str | None = None
        self._set_schema(info.get("input_schema"))
        self.schema_known = schema_known
        self._live_schema = info.get("input_schema")
        self._config = server
        self._home = home

    def __repr__(self) -> str:
        return f"<McpTool {self.name}>"

    async def _connection(self) -> Any:
        pool = sessions.current_pool()
        if self.server not in pool.servers:
            # The run's config lost the server since registration; keep the registered one.
            pool.servers[self.server] = self._config
        conn = await pool.get(self.server)
        catalog.remember(self._home, self._config, conn.tools)
        live = conn.tools.get(self.tool_name)
        if live is None:
            known = ", ".join(sorted(conn.tools)) or "none"
            raise ToolError(f"MCP server {self.server!r} has no tool {self.tool_name!r} "
                            f"(it lists: {known})", code="TOOL_001",
                            context={"tool_server": self.server, "tool_name": self.tool_name})
        return conn, live

    async def ensure_schema(self) -> dict[str, Any]:
        """Connect (if not yet) and return the live input schema; for callers that build
        arguments from the schema (the react strategy) when it was unknown at registration."""
        if not self.schema_known:
            _, live = await self._connection()
            self._adopt(live)
        return self.input_schema

    def _set_schema(self, schema: Any) -> None:
        """Keep the server's schema, or an open one and the reason when it is not valid JSON
        Schema (the core validates arguments against ``input_schema`` and must not crash)."""
        self.schema_error = None
        if not schema:
            self.input_schema = dict(OPEN_SCHEMA)
            return
        try:
            _validator(schema)
        except Exception as exc:  # noqa: BLE001 - SchemaError, or garbage that is not a dict
            self.input_schema = dict(OPEN_SCHEMA)
            self.schema_error = getattr(exc, "message", None) or str(exc)
            return
        self.input_schema = schema

    def _adopt(self, live: dict[str, Any]) -> None:
        self._set_schema(live["input_schema"])
        self._live_schema = live["input_schema"]
        self.description = live["description"] or self.description
        self.schema_known = True

    async def call(self, arguments: dict[str, Any]) -> Any:
        if self.schema_error is not None:
            raise self._schema_failure()
        conn, live = await self._connection()
        if not self.schema_known or live["input_schema"] != self._live_schema:
            # Registered before the server was ever listed (or it changed): check against
            # what the server says now, since the core validated against the old schema.
            self._adopt(live)
            if self.schema_error is not None:
                raise self._schema_failure()
            validate_arguments(self.input_schema, arguments, self.name)
        return await conn.call(self.tool_name, arguments)

    def _schema_failure(self) -> ToolError:
        return ToolError(f"MCP server {self.server!r} declares an invalid input schema for "
                         f"{self.tool_name!r} ({self.schema_error}); arguments cannot be checked",
                         code="TOOL_005",
                         context={"tool_server": self.server, "tool_name": self.tool_name})


def mcp_tools(servers: dict[str, ServerConfig], home: Path, *, discover: bool = True
              ) -> list[McpTool]:
    """Tool objects for the configured servers, without connecting to them when possible.

    Per server: the cached listing if there is one; else the allow-list's names (schemas are
    fetched on first use); else one discovery connection (when ``discover``).
    """
    listings: dict[str, dict[str, dict[str, Any]]] = {}
    unknown_schema: set[str] = set()
    to_discover: dict[str, ServerConfig] = {}
    for name, server in servers.items():
        cached = catalog.cached_listing(home, server)
        if cached is not None:
            listings[name] = cached
        elif server.allow is not None:
            listings[name] = {t: {"name": t, "description": "", "input_schema": dict(OPEN_SCHEMA)}
                              for t in server.allow}
            unknown_schema.add(name)
        elif discover and DISCOVER_ON_REGISTER:
            to_discover[name] = server
    listings.update(catalog.discover(home, to_discover))
    tools = []
    for name, listing in listings.items():
        server = servers[name]
        for tool_name, info in sorted(listing.items()):
            if server.allows(tool_name):
                tools.append(McpTool(server, {**info, "name": tool_name}, home=home,
                                     schema_known=name not in unknown_schema))
    return tools
