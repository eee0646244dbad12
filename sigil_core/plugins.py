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
from typing import Any, Callable, Iterable

import pluggy

from . import hookspecs
from .errors import UsageError

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
    ("builtin.sinks", "sigil_core.builtin.sinks"),
    ("builtin.memory", "sigil_core.builtin.memory"),
)


class PluginRecord:
    """One row of ``sigil plugins``. (A plain class: attrs costs 25 ms of start-up.)"""

    __slots__ = ("name", "distribution", "version", "status", "hooks", "error", "builtin")

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

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


PHASE_HOOKS = ("sigil_route", "sigil_handle_intent", "sigil_plan", "sigil_retrieve",
               "sigil_reason", "sigil_validate", "sigil_extract")


def _is_builtin(name: str | None) -> bool:
    return bool(name) and name.startswith("builtin.")


def parse_choices(raw: str | list[str] | tuple[str, ...]) -> dict[str, str]:
    """``"retrieve=memory_sqlite,route=x"`` (or a list of ``phase=name``) as a dict."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    out = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        phase, sep, name = item.partition("=")
        if not sep or not phase.strip() or not name.strip():
            raise UsageError(f"cannot read plugin choice {item!r}: write PHASE=PLUGIN, "
                             "e.g. retrieve=memory_sqlite")
        out[phase.strip()] = name.strip()
    return out


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def disabled_from_env() -> set[str]:
    raw = os.environ.get("SIGIL_DISABLE_PLUGINS", "")
    return {p.strip() for p in raw.split(",") if p.strip()}


class PluginHost:
    """Owns the pluggy manager; the rest of the code never touches ``pm.hook`` directly."""

    def __init__(
        self,
        *,
        disabled: Iterable[str] = (),
        strict: bool | None = None,
        load_entry_points: bool = True,
        warn: Callable[[str], None] | None = None,
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
        self.choices: dict[str, str] = {}

    # ----------------------------------------------------------------- loading

    def load(self) -> PluginHost:
        if self._loaded:
            return self
        self._loaded = True
        version = _core_version()
        for name, module_name in DEFAULT_PLUGINS:
            self._load_one(name, "sigil-core", version, lambda m=module_name: importlib.import_module(m),
                           builtin=True)
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
            except pluggy.PluginValidationError:
                self.pm.unregister(name=name)
                raise
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            if self.strict:
                raise
            detail = f"{type(exc).__name__}: {exc}"
            self.records.append(PluginRecord(name, dist, version, "failed", error=detail,
                                             builtin=builtin))
            self._warn(f"warning: plugin {name!r} ({dist}) failed to load and is skipped: {detail}")
            return
        hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        self.records.append(PluginRecord(name, dist, version, "active", hooks, builtin=builtin))

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register an in-process plugin (tests, embedding applications)."""
        self.pm.register(plugin, name=name)
        self._registries.clear()

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._registries.clear()

    # ----------------------------------------------------------------- registries

    def registry(self, kind: str) -> dict[str, Any]:
        """Objects contributed through ``sigil_register_<kind>``, by name.

        Applied in reverse call order (builtins first) so that a plugin overrides a builtin of
        the same name.
        """
        cached = self._registries.get(kind)
        if cached is not None:
            return cached
        items: dict[str, Any] = {}
        caller = getattr(self.pm.hook, f"sigil_register_{kind}")
        for impl in caller.get_hookimpls():  # builtins (trylast) first, so later ones override
            collected: list[Any] = []
            try:
                impl.function(register=collected.append)
            except Exception as exc:  # noqa: BLE001
                if self.strict:
                    raise
                self._warn(f"warning: plugin {impl.plugin_name!r} failed in "
                           f"sigil_register_{kind}: {type(exc).__name__}: {exc}")
                continue
            for obj in collected:
                items[obj.name] = obj
        self._registries[kind] = items
        return items

    def register_commands(self, cli: Any) -> None:
        for impl in self.pm.hook.sigil_register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:  # noqa: BLE001
                if self.strict:
                    raise
                self._warn(f"warning: plugin {impl.plugin_name!r} failed to add commands: {exc}")

    def status_notes(self, sections: dict[str, Any]) -> dict[str, str]:
        """What each plugin says about its state (``sigil_plugin_status``), by plugin name."""
        notes: dict[str, str] = {}
        for impl in self.pm.hook.sigil_plugin_status.get_hookimpls():
            try:
                note = impl.function(sections=sections)
            except Exception as exc:  # noqa: BLE001 - a status line must not break the listing
                if self.strict:
                    raise
                note = f"status unknown: {type(exc).__name__}: {exc}"
            if note:
                notes[impl.plugin_name] = str(note)
        return notes

    # ----------------------------------------------------------------- phase calls

    def has_impl(self, hook: str) -> bool:
        return bool(self.phase_impls(hook))

    def choose(self, choices: dict[str, str]) -> None:
        """Name the plugin that runs a phase: ``{"retrieve": "memory_sqlite"}``."""
        for phase, name in choices.items():
            if f"sigil_{phase}" not in PHASE_HOOKS:
                raise UsageError(f"unknown phase {phase!r} to choose a plugin for; phases: "
                                 + ", ".join(h[6:] for h in PHASE_HOOKS))
            self.choices[phase] = name

    def phase_impls(self, hook: str) -> list[Any]:
        """The implementations to call for a phase hook, in call order.

        Builtins are always kept as the fallback. When several installed plugins implement the
        phase, one must be chosen by name (config ``plugins.use``, ``SIGIL_USE`` or ``--use``):
        silently picking one would make the run depend on installation order.
        """
        impls = list(reversed(getattr(self.pm.hook, hook).get_hookimpls()))
        phase = hook[len("sigil_"):]
        plugins = [i.plugin_name for i in impls if not _is_builtin(i.plugin_name)]
        choice = self.choices.get(phase)
        if choice is not None:
            if choice not in plugins and not _is_builtin(choice):
                raise UsageError(f"plugin {choice!r} chosen for {phase} does not implement it; "
                                 f"candidates: {', '.join(plugins) or 'only the builtin'}")
            return [i for i in impls if i.plugin_name == choice or _is_builtin(i.plugin_name)]
        if len(set(plugins)) > 1:
            raise UsageError(
                f"several plugins implement {phase}: {', '.join(plugins)}; choose one with "
                f"`plugins: {{use: {{{phase}: NAME}}}}` in the config, SIGIL_USE={phase}=NAME "
                f"or --use {phase}=NAME")
        return impls

    async def call_first(self, hook: str, **kwargs: Any) -> Any:
        """Await implementations in order; the first non-None result wins (DESIGN §2)."""
        for impl in self.phase_impls(hook):
            args = {k: kwargs[k] for k in impl.argnames if k in kwargs}
            result = await await_me_maybe(impl.function(**args))
            if result is not None:
                return result
        return None


async def await_me_maybe(value: Any) -> Any:
    """A hook may return a value, a callable or an awaitable; normalise to a value."""
    if callable(value) and not inspect.isclass(value):
        value = value()
    if inspect.isawaitable(value):
        value = await value
    return value


class EntryPoint:
    """A ``sigil`` entry point of an installed distribution."""

    __slots__ = ("name", "value", "dist_name", "dist_version")

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
