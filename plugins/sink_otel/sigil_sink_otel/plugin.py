"""Hook implementations of sink_otel. Light on purpose: ``sigil plugins`` and every command
import this module, and the OpenTelemetry SDK costs ~100 ms to import; it is imported only
when a run starts with an endpoint configured."""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl

from .settings import OtelSettings


class _Idle:
    """What a run gets when no endpoint is configured: nothing to do."""

    name = "sink_otel"
    #: Closed on the run's event loop (nothing to close), not on a worker thread.
    close_on_loop = True

    def open(self, run: Any) -> None:
        pass

    def write(self, events: Any) -> None:
        pass

    def close(self, run: Any, record: dict[str, Any]) -> None:
        pass


_IDLE = _Idle()


class OtelSink:
    """The registered sink: ``bind(run)`` gives each run its own trace, or the idle sink."""

    name = "sink_otel"

    def bind(self, run: Any) -> Any:
        where = getattr(run.config, "path", None) or "the config file"
        settings = OtelSettings(run.config.section("otel"), where=str(where))
        if not settings.active:
            return _IDLE
        from .sink import OtelRunSink

        return OtelRunSink(settings)

    # Unbound use (a host that does not call bind) stays idle rather than failing.
    open = _IDLE.open
    write = _IDLE.write
    close = _IDLE.close


@hookimpl
def sigil_register_log_sinks(register) -> None:
    register(OtelSink())


@hookimpl
def sigil_plugin_status(sections: dict[str, Any]) -> str:
    from sigil_core import ConfigError

    section = sections.get("otel")
    try:
        return OtelSettings(section if isinstance(section, dict) else None).status()
    except ConfigError as exc:
        return f"misconfigured: {exc}"


@hookimpl
def sigil_config_sections() -> list[str]:
    """The config sections this plugin reads."""
    return ["otel"]
