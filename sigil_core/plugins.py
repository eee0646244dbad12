"""Finding, loading and calling plugins.

Plugins are modules registered with pluggy. They come from two places, loaded the same way:
the builtins of :data:`DEFAULT_PLUGINS` (the core's own defaults) and the ``sigil`` entry-point
group of installed distributions. We load entry points in our own loop rather than with
``load_setuptools_entrypoints`` so that one broken plugin is a warning and a "failed" row in
``sigil plugins``, not a crash (pluggy stops at the first failure). ``SIGIL_STRICT_PLUGINS=1``
re-raises instead, for plugin authors.

A plugin is disabled by name with ``plugins.disabled`` in the config file or
``SIGIL_DISABLE_PLUGINS=name,name``; builtins can be disabled too (``builtin.routing``...).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, UsageError

ENTRY_POINT_GROUP = "sigil"

#: The core's defaults, registered through the same hooks as any plugin (``trylast``).
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("builtin.offline", "sigil_core.builtin.offline"),
    ("builtin.routing", "sigil_core.builtin.routing"),
    ("builtin.planning", "sigil_core.builtin.planning"),
    ("builtin.reasoning", "sigil_core.builtin.reasoning"),
    ("builtin.validation", "sigil_core.builtin.validation"),
    ("builtin.contracts", "sigil_core.builtin.contracts"),
    ("builtin.agents", "sigil_core.builtin.agents"),
    ("builtin.session_jsonl", "sigil_core.builtin.sinks:session_jsonl"),
    ("builtin.session_json", "sigil_core.builtin.sinks:session_json"),
    ("builtin.daily_log", "sigil_core.builtin.sinks:daily_log"),
    ("builtin.memory", "sigil_core.builtin.memory"),
)


class PluginRecord:
    """One row of ``sigil plugins``. (A plain class: attrs costs 25 ms of start-up.)"""

    __slots__ = (
        "builtin",
        "distribution",
        "error",
        "hooks",
        "name",
        "problems",
        "registered",
        "status",
        "version",
    )

    def __init__(self, name: str, distribution: str, version: str, status: str,
                 hooks: list[str] | None = None, error: str | None = None,
                 builtin: bool = False) -> None:
        self.name = name
        self.distribution = distribution
        self.version = version
        self.status = status  # "active" | "failed" | "disabled"
        self.hooks = hooks or []
        self.error = error
        self.builtin = builtin
        #: What it registered, by kind ("strategies": ["debate"]), filled by the registries.
        self.registered: dict[str, list[str]] = {}
        #: What went wrong after loading (bad objects dropped, name conflicts lost).
        self.problems: list[str] = []

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


class PluginProblem:
    """A plugin failure the run records as a warning event (load, registration, sink start)."""

    __slots__ = ("hook", "message", "plugin")

    def __init__(self, plugin: str, hook: str, message: str) -> None:
        self.plugin = plugin
        self.hook = hook
        self.message = message


PHASE_HOOKS = ("sigil_route", "sigil_handle_intent", "sigil_plan", "sigil_retrieve",
               "sigil_reason", "sigil_validate", "sigil_extract")

#: Choosing ``memory=NAME`` chooses NAME for each of these phases.
PHASE_GROUPS: dict[str, tuple[str, ...]] = {"memory": ("retrieve", "extract")}

#: Registration kinds (``sigil_register_<kind>``) and the singular used in choices
#: (``--use strategy.debate=PLUGIN``) and messages.
REGISTRY_KINDS: dict[str, str] = {
    "providers": "provider", "strategies": "strategy", "tools": "tool", "agents": "agent",
    "contracts": "contract", "log_sinks": "log_sink", "monitor_transports": "monitor_transport",
    "embedders": "embedder", "memory_backends": "memory_backend",
}

#: The shape each kind's objects must have: a protocol class (members checked by name) or a
#: data class (checked with isinstance), imported when first needed.
_SHAPES: dict[str, tuple[str, str]] = {
    "providers": ("sigil_core.protocols", "Provider"),
    "strategies": ("sigil_core.protocols", "Strategy"),
    "tools": ("sigil_core.protocols", "Tool"),
    "log_sinks": ("sigil_core.protocols", "LogSink"),
    "monitor_transports": ("sigil_core.protocols", "MonitorTransport"),
    "embedders": ("sigil_core.protocols", "Embedder"),
    "memory_backends": ("sigil_core.memory", "MemoryBackend"),
    "agents": ("sigil_core.model", "Agent"),
    "contracts": ("sigil_core.model", "Contract"),
}

#: Protocol members a registered object may leave out (the host has a default for them).
_OPTIONAL_MEMBERS = {"priority", "description", "notice"}


def shape_problem(kind: str, obj: Any) -> str | None:
    """What ``obj`` lacks to be a registered object of ``kind`` (None when it fits).

    Protocols are structural: we check each member the protocol declares by name (methods must
    be callable), which is what ``runtime_checkable`` does, but we can say *which* are missing.
    """
    where = _SHAPES.get(kind)
    if where is None:
        return None
    shape = getattr(importlib.import_module(where[0]), where[1])
    if not getattr(shape, "_is_protocol", False):
        if isinstance(obj, shape):
            return None
        return f"is a {type(obj).__name__}, not a {shape.__module__}.{shape.__name__}"
    missing = []
    for member in _protocol_members(shape):
        if member in _OPTIONAL_MEMBERS:
            continue
        if not hasattr(obj, member):
            missing.append(member)
        elif callable(getattr(shape, member, None)) and not callable(getattr(obj, member)):
            missing.append(f"{member} (not callable)")
    if missing:
        return f"{type(obj).__name__} lacks {', '.join(missing)} of {where[1]}"
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        return f"{type(obj).__name__}.name must be a non-empty string, got {name!r}"
    return None


def _protocol_members(proto: type) -> list[str]:
    names: list[str] = []
    for klass in proto.__mro__:
        if klass is object or klass.__name__ in ("Protocol", "Generic"):
            continue
        for name in [*getattr(klass, "__annotations__", {}), *vars(klass)]:
            if not name.startswith("_") and name not in names:
                names.append(name)
    return names


def _is_builtin(name: str | None) -> bool:
    return name is not None and name.startswith("builtin.")


def parse_choices(raw: str | list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """``"retrieve=memory_sqlite,my_plugin"`` (or a list of items) as ``(what, plugin)`` pairs.

    ``what`` is a phase (``retrieve``), a group of phases (``memory``), a registered name
    (``strategy.debate``), or ``*`` for a bare plugin name: every phase the plugin implements.
    """
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    out = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        what, sep, name = item.partition("=")
        if not sep:
            what, name = "*", item
        if not what.strip() or not name.strip():
            raise UsageError(f"cannot read plugin choice {item!r}: write PLUGIN, PHASE=PLUGIN "
                             "or KIND.NAME=PLUGIN, e.g. memory_sqlite or retrieve=memory_sqlite")
        out.append((what.strip(), name.strip()))
    return out


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def disabled_from_env() -> set[str]:
    raw = os.environ.get("SIGIL_DISABLE_PLUGINS", "")
    return {p.strip() for p in raw.split(",") if p.strip()}


#: Hooks that collect from every plugin (not phases): wrappers make no sense there.
_COLLECTING_HOOKS = ("sigil_register_", "sigil_plugin_status", "sigil_config_sections")


class PluginHost:
    """Owns the pluggy manager; the rest of the code never touches ``pm.hook`` directly."""

    def __init__(
        self,
        *,
        disabled: Iterable[str] = (),
        strict: bool | None = None,
        load_entry_points: bool = True,
        warn: Callable[[str], None] | None = None,
        config: Any = None,
    ) -> None:
        self.pm = pluggy.PluginManager("sigil")
        self.pm.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        self.disabled = set(disabled) | disabled_from_env()
        self.strict = _truthy(os.environ.get("SIGIL_STRICT_PLUGINS")) if strict is None else strict
        self._warn = warn or (lambda msg: print(msg, file=sys.stderr))
        self._load_entry_points = load_entry_points
        self._loaded = False
        self._registries: dict[str, dict[str, Any]] = {}
        self._owners: dict[str, dict[str, str]] = {}
        self.choices: dict[str, str] = {}
        #: phase_impls' answers: hook -> (the hook's implementations, the choice, the answer).
        self._phase_impls: dict[str, tuple[tuple[Any, ...], str | None, list[Any]]] = {}
        #: Failures after which the host went on (a run records each as a warning event).
        self.problems: list[PluginProblem] = []
        self._config = config

    # ----------------------------------------------------------------- config

    @property
    def config(self) -> Any:
        """The config registration hooks receive (loaded on first use when not given)."""
        if self._config is None:
            from .config import load_config

            self._config = load_config()
        return self._config

    def configure(self, config: Any) -> None:
        """Use this config for the registration hooks (registries are rebuilt with it)."""
        if config is not self._config:
            self._config = config
            self._registries.clear()

    # ----------------------------------------------------------------- problems

    def problem(self, plugin: str, hook: str, message: str) -> None:
        """Report a plugin failure the host survives: a stderr line and, for runs, an event."""
        if any(p.plugin == plugin and p.message == message for p in self.problems):
            return  # registries are rebuilt (new config, new plugin): say it once
        self.problems.append(PluginProblem(plugin, hook, message))
        record = self.record(plugin)
        if record is not None and record.status == "active":
            record.problems.append(message)
        self._warn(f"warning: {message}")
        from .run import current_run

        run = current_run()
        if run is not None:  # found during a run: the session records it too
            run.plugin_problem(self.problems[-1])

    def record(self, plugin: str | None) -> PluginRecord | None:
        return next((r for r in self.records if r.name == plugin), None)

    # ----------------------------------------------------------------- loading

    def load(self) -> PluginHost:
        if self._loaded:
            return self
        self._loaded = True
        version = _core_version()
        for name, module_name in DEFAULT_PLUGINS:
            self._load_one(name, "sigil-core", version,
                           EntryPoint(name, module_name, "sigil-core", version).load, builtin=True)
        if self._load_entry_points:
            for ep in _entry_points():
                self._load_one(ep.name, ep.dist_name, ep.dist_version, ep.load)
        return self

    def _load_one(self, name: str, dist: str, version: str, loader: Callable[[], Any],
                  builtin: bool = False) -> None:
        if name in self.disabled:
            self.records.append(PluginRecord(name, dist, version, "disabled", builtin=builtin))
            return
        try:
            plugin = loader()
            self.pm.register(plugin, name=name)
            try:
                self.pm.check_pending()
                _check_wrappers(self.pm, plugin)
            except pluggy.PluginValidationError:
                self.pm.unregister(name=name)
                raise
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            detail = f"{type(exc).__name__}: {exc}"
            if self.strict:
                raise PluginError(
                    f"plugin {name!r} (distribution {dist} {version}) failed to load: {detail} "
                    "(SIGIL_STRICT_PLUGINS=1 makes this an error; unset it to skip the plugin, "
                    "or uninstall it)") from None
            self.records.append(PluginRecord(name, dist, version, "failed", error=detail,
                                             builtin=builtin))
            self.problems.append(PluginProblem(name, "load", f"plugin {name!r} ({dist}) failed "
                                               f"to load and is skipped: {detail}"))
            self._warn(f"warning: plugin {name!r} ({dist}) failed to load and is skipped: {detail}")
            return
        hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        self.records.append(PluginRecord(name, dist, version, "active", hooks, builtin=builtin))

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register an in-process plugin (tests, embedding applications)."""
        self.pm.register(plugin, name=name)
        try:
            _check_wrappers(self.pm, plugin)
        except pluggy.PluginValidationError:
            self.pm.unregister(plugin)
            raise
        hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        plugin_name = self.pm.get_name(plugin) or repr(plugin)
        self.records.append(PluginRecord(plugin_name, "(in process)", "-", "active", hooks))
        self._registries.clear()

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.records = [r for r in self.records if r.name != name or r.status != "active"]
        self._registries.clear()

    # ----------------------------------------------------------------- registries

    def registry(self, kind: str) -> dict[str, Any]:
        """Objects contributed through ``sigil_register_<kind>``, by name.

        Each object is checked against its shape (:mod:`sigil_core.protocols`): one that does
        not fit is dropped with a warning naming the plugin, the hook and what is missing.
        Names: a plugin's object replaces a builtin's of the same name. When two plugins register
        the same name, the one chosen with ``KIND.NAME=PLUGIN`` (``--use``, ``SIGIL_USE`` or
        ``plugins.use``) wins; without a choice, the plugin whose name sorts first, and a warning
        names both.
        """
        cached = self._registries.get(kind)
        if cached is not None:
            return cached
        items: dict[str, Any] = {}
        owners: dict[str, str] = {}
        hook = f"sigil_register_{kind}"
        single = REGISTRY_KINDS.get(kind, kind)
        caller = getattr(self.pm.hook, hook)
        config = None
        for impl in caller.get_hookimpls():  # builtins (trylast) first
            collected: list[Any] = []
            args: dict[str, Any] = {"register": collected.append}
            if "config" in impl.argnames:
                config = config if config is not None else self.config
                args["config"] = config
            plugin = impl.plugin_name
            try:
                impl.function(**{k: v for k, v in args.items() if k in impl.argnames})
            except Exception as exc:  # noqa: BLE001
                message = (f"plugin {plugin!r} failed in {hook}: {type(exc).__name__}: {exc}")
                if self.strict:
                    raise PluginError(message + " (SIGIL_STRICT_PLUGINS=1)") from None
                self.problem(plugin, hook, message)
                continue
            for obj in collected:
                bad = shape_problem(kind, obj)
                if bad:
                    message = f"plugin {plugin!r} registered a bad {single} in {hook}: {bad}; dropped"
                    if self.strict:
                        raise PluginError(message + " (SIGIL_STRICT_PLUGINS=1)")
                    self.problem(plugin, hook, message)
                    continue
                name = obj.name
                other = owners.get(name)
                if other is not None and other != plugin and not _is_builtin(other):
                    keep = self._settle(kind, name, other, plugin)
                    if keep == other:
                        continue
                items[name] = obj
                owners[name] = plugin
        for record in self.records:
            record.registered.pop(kind, None)
        for name, plugin in sorted(owners.items()):
            owner = self.record(plugin)
            if owner is not None:
                owner.registered.setdefault(kind, []).append(name)
        self._registries[kind] = items
        self._owners[kind] = owners
        return items

    def _settle(self, kind: str, name: str, first: str, second: str) -> str:
        """Which of two plugins registering the same name wins (see :meth:`registry`)."""
        single = REGISTRY_KINDS.get(kind, kind)
        chosen = self.choices.get(f"{single}.{name}")
        if chosen in (first, second):
            return chosen
        keep, lose = sorted((first, second))
        self.problem(lose, f"sigil_register_{kind}",
                     f"plugins {first!r} and {second!r} both register the {single} {name!r}; "
                     f"using {keep!r}'s (the first by plugin name). Choose with "
                     f"--use {single}.{name}=PLUGIN, SIGIL_USE or "
                     f"plugins.use: {{{single}.{name}: PLUGIN}}")
        return keep

    def owner(self, kind: str, name: str) -> str | None:
        """The plugin whose object is registered under ``name``."""
        self.registry(kind)
        return self._owners.get(kind, {}).get(name)

    def register_commands(self, cli: Any) -> None:
        for impl in self.pm.hook.sigil_register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:  # noqa: BLE001
                message = f"plugin {impl.plugin_name!r} failed to add commands: {exc}"
                if self.strict:
                    raise PluginError(message + " (SIGIL_STRICT_PLUGINS=1)") from None
                self.problem(impl.plugin_name, "sigil_register_commands", message)

    def status_notes(self, sections: dict[str, Any]) -> dict[str, str]:
        """What each plugin says about its state (``sigil_plugin_status``), by plugin name."""
        notes: dict[str, str] = {}
        for impl in self.pm.hook.sigil_plugin_status.get_hookimpls():
            try:
                note = impl.function(sections=sections)
            except Exception as exc:
                if self.strict:
                    raise
                note = f"status unknown: {type(exc).__name__}: {exc}"
            if note:
                notes[impl.plugin_name] = str(note)
        return notes

    def config_sections(self) -> set[str]:
        """Top-level config sections that plugins read (``sigil_config_sections``), plus each
        plugin's own name (the section a plugin that does not say claims)."""
        sections = {r.name for r in self.records}
        for impl in self.pm.hook.sigil_config_sections.get_hookimpls():
            try:
                names: Any = impl.function()
                sections.update(str(name) for name in names or ())
            except Exception:  # noqa: BLE001, S112 - an unknown-key warning must not break a command
                continue
        return sections

    # ----------------------------------------------------------------- phase calls

    def has_impl(self, hook: str) -> bool:
        return any(not i.wrapper for i in self.phase_impls(hook))

    def choose(self, choices: dict[str, str] | Iterable[tuple[str, str]]) -> None:
        """Name the plugin that runs a phase or owns a name.

        ``{"retrieve": "memory_sqlite"}``; ``memory`` for retrieve and extract at once;
        ``("*", NAME)`` for every phase NAME implements; ``strategy.debate`` for the plugin whose
        ``debate`` strategy wins when two register it.
        """
        pairs = choices.items() if isinstance(choices, dict) else choices
        phases = [h[len("sigil_"):] for h in PHASE_HOOKS]
        for what, name in pairs:
            if what == "*":
                record = self.record(name)
                if record is None or record.status != "active":
                    active = sorted(r.name for r in self.records
                                    if r.status == "active" and not r.builtin)
                    raise UsageError(f"no active plugin named {name!r} to choose; active: "
                                     f"{', '.join(active) or 'none'}")
                implemented = [h[len("sigil_"):] for h in record.hooks if h in PHASE_HOOKS]
                if not implemented:
                    raise UsageError(f"plugin {name!r} implements no phase ({', '.join(phases)})"
                                     "; choose it for a name instead, e.g. strategy.NAME="
                                     f"{name}")
                for phase in implemented:
                    self.choices[phase] = name
            elif what in PHASE_GROUPS:
                for phase in PHASE_GROUPS[what]:
                    self.choices[phase] = name
            elif "." in what:
                kind = what.partition(".")[0]
                if kind not in REGISTRY_KINDS.values():
                    raise UsageError(f"unknown kind {kind!r} in plugin choice {what!r}; kinds: "
                                     + ", ".join(sorted(REGISTRY_KINDS.values())))
                self.choices[what] = name
                self._registries.clear()
            elif what in phases:
                self.choices[what] = name
            else:
                raise UsageError(
                    f"unknown phase {what!r} to choose a plugin for; phases: "
                    + ", ".join(phases) + ", or memory (retrieve and extract), or a plugin name "
                    "alone for every phase it implements")

    def phase_impls(self, hook: str) -> list[Any]:
        """The implementations to call for a phase hook, in call order (wrappers included).

        Builtins are always kept as the fallback. When several installed plugins implement the
        phase, one must be chosen by name (config ``plugins.use``, ``SIGIL_USE`` or ``--use``):
        silently picking one would make the run depend on installation order.
        """
        registered = tuple(getattr(self.pm.hook, hook).get_hookimpls())
        phase = hook[len("sigil_"):]
        choice = self.choices.get(phase)
        # A run asks ~20 times (every call_first): the answer is kept while the hook's
        # implementations and the choice are the same objects (a registration changes them).
        known = self._phase_impls.get(hook)
        if known is not None and known[1] == choice and known[0] == registered:
            return list(known[2])
        impls = self._decide_phase_impls(list(reversed(registered)), phase, choice)
        self._phase_impls[hook] = (registered, choice, impls)
        return list(impls)

    def _decide_phase_impls(self, impls: list[Any], phase: str, choice: str | None) -> list[Any]:
        plugins = list(dict.fromkeys(i.plugin_name for i in impls
                                     if not _is_builtin(i.plugin_name) and not i.wrapper))
        if choice is not None:
            if choice not in plugins and not _is_builtin(choice):
                raise UsageError(f"plugin {choice!r} chosen for {phase} does not implement it; "
                                 f"candidates: {', '.join(plugins) or 'only the builtin'}")
            return [i for i in impls if i.wrapper or i.plugin_name == choice
                    or _is_builtin(i.plugin_name)]
        if len(plugins) > 1:
            groups = [g for g, members in PHASE_GROUPS.items() if phase in members]
            raise UsageError(
                f"several plugins implement {phase}: {', '.join(plugins)}; choose one for every "
                f"phase it implements with --use NAME (or SIGIL_USE=NAME"
                + (f", or `plugins: {{use: {{{groups[0]}: NAME}}}}` in the config" if groups
                   else "")
                + f"), or for {phase} alone with --use {phase}=NAME "
                f"(`plugins: {{use: {{{phase}: NAME}}}}`)")
        return impls

    async def call_first(self, hook: str, **kwargs: Any) -> Any:
        """Await implementations in order; the first non-None result wins (DESIGN §2).

        New-style pluggy wrappers (``@hookimpl(wrapper=True)``, a generator that yields once)
        wrap the whole call as in pytest: the code before ``yield`` runs first, ``yield`` gives
        the phase's result (or raises its exception) and what the wrapper returns is the result.
        """
        impls = self.phase_impls(hook)
        wrappers = [i for i in impls if i.wrapper]
        if not wrappers:
            return await self._first_result(impls, kwargs)
        started = []
        try:
            for impl in wrappers:  # outermost first
                gen = impl.function(**_args(impl, kwargs))
                next(gen)
                started.append(gen)
        except StopIteration:
            raise PluginError(f"wrapper of {hook} in plugin {impl.plugin_name!r} did not yield") \
                from None
        result: Any = None
        error: BaseException | None = None
        try:
            result = await self._first_result([i for i in impls if not i.wrapper], kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the wrappers, re-raised below
            error = exc
        for gen in reversed(started):  # innermost first
            try:
                if error is None:
                    gen.send(result)
                else:
                    gen.throw(error)
            except StopIteration as stop:
                result, error = stop.value, None
            except BaseException as exc:  # noqa: BLE001
                error = exc
            else:
                error = PluginError(f"a wrapper of {hook} yielded more than once")
        if error is not None:
            raise error
        return result

    async def _first_result(self, impls: list[Any], kwargs: dict[str, Any]) -> Any:
        for impl in impls:
            result = await await_me_maybe(impl.function(**_args(impl, kwargs)))
            if result is not None:
                return result
        return None


def _args(impl: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs[k] for k in impl.argnames if k in kwargs}


def _check_wrappers(pm: pluggy.PluginManager, plugin: Any) -> None:
    """Old-style hookwrappers, and wrappers of collecting hooks, are refused at load."""
    for caller in pm.get_hookcallers(plugin) or []:
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            if impl.hookwrapper:
                raise pluggy.PluginValidationError(
                    plugin, f"{caller.name}: old-style hookwrapper=True is not supported; use "
                    "@hookimpl(wrapper=True) (a generator that yields once and returns the result)")
            if impl.wrapper and caller.name.startswith(_COLLECTING_HOOKS):
                raise pluggy.PluginValidationError(
                    plugin, f"{caller.name}: wrappers are supported on phase hooks only "
                    f"({', '.join(PHASE_HOOKS)})")


async def await_me_maybe(value: Any) -> Any:
    """A hook may return a value, a callable or an awaitable; normalise to a value."""
    if callable(value) and not inspect.isclass(value):
        value = value()
    if inspect.isawaitable(value):
        value = await value
    return value


class EntryPoint:
    """A ``sigil`` entry point of an installed distribution."""

    __slots__ = ("dist_name", "dist_version", "name", "value")

    def __init__(self, name: str, value: str, dist_name: str, dist_version: str) -> None:
        self.name = name
        self.value = value
        self.dist_name = dist_name
        self.dist_version = dist_version

    def load(self) -> Any:
        module_name, _, attr = self.value.partition(":")
        obj = importlib.import_module(module_name.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj


def _entry_points() -> list[EntryPoint]:
    """The ``sigil`` entry points on sys.path, the first distribution of a name winning.

    We read ``*.dist-info/entry_points.txt`` ourselves instead of asking importlib.metadata:
    importing it costs 60-80 ms here, a third of the start-up budget of `sigil --help`, and
    the file format is a plain INI section. (Zipped eggs, which nothing installs any more, are
    not searched.)
    """
    found: dict[str, EntryPoint] = {}
    seen_dists: set[str] = set()
    for folder in sys.path:
        try:
            entries = sorted(e.name for e in os.scandir(folder or ".")
                             if e.name.endswith((".dist-info", ".egg-info")))
        except OSError:
            continue
        for entry in entries:
            base = os.path.join(folder or ".", entry)
            eps_file = os.path.join(base, "entry_points.txt")
            if not os.path.isfile(eps_file):
                continue
            dist_name, version = _dist_name_version(base, entry)
            key = dist_name.lower().replace("_", "-")
            if key in seen_dists:
                continue
            seen_dists.add(key)
            for name, value in _read_group(eps_file, ENTRY_POINT_GROUP):
                found.setdefault(name, EntryPoint(name, value, dist_name, version))
    return sorted(found.values(), key=lambda e: e.name)


def _read_group(path: str, group: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    current = None
    try:
        with open(path, encoding="utf-8") as fh:
            for raw in fh:
                line = raw.strip()
                if not line or line.startswith(("#", ";")):
                    continue
                if line.startswith("[") and line.endswith("]"):
                    current = line[1:-1].strip()
                elif current == group and "=" in line:
                    name, _, value = line.partition("=")
                    out.append((name.strip(), value.strip()))
    except OSError:
        return []
    return out


def _dist_name_version(base: str, entry: str) -> tuple[str, str]:
    """Name and version from METADATA (PKG-INFO for egg-info), else from the folder name."""
    meta = os.path.join(base, "METADATA" if entry.endswith(".dist-info") else "PKG-INFO")
    name = version = None
    try:
        with open(meta, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    break
                if line.startswith("Name:"):
                    name = line[5:].strip()
                elif line.startswith("Version:"):
                    version = line[8:].strip()
    except OSError:
        pass
    stem = entry.rsplit(".", 1)[0]
    parts = stem.split("-")
    return name or parts[0], version or (parts[1] if len(parts) > 1 else "?")


def _core_version() -> str:
    from . import __version__

    return __version__
