"""The ``otel:`` config section and the standard OpenTelemetry environment variables.

Precedence is Sigil's (environment over config file over defaults), and the environment
variables are the standard ones, so a Sigil run is configured like any OpenTelemetry SDK:

==========================================  ==========================  =====================
environment variable                        ``otel:`` key               default
==========================================  ==========================  =====================
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the     ``endpoint``                none: the plugin idles
``..._TRACES_ENDPOINT`` one)
``OTEL_EXPORTER_OTLP_PROTOCOL``             ``protocol``                ``http/protobuf``
``OTEL_EXPORTER_OTLP_HEADERS``              ``headers`` (mapping)       none
``OTEL_SERVICE_NAME``                       ``service_name``            ``sigil``
``OTEL_RESOURCE_ATTRIBUTES``                ``resource_attributes``     none
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_       ``capture_content``         false
MESSAGE_CONTENT``
``OTEL_SDK_DISABLED``                       ``enabled``                 true
``OTEL_METRICS_EXPORTER=none``              ``metrics: false``          metrics on
(none)                                      ``flush_timeout_ms``        2000
==========================================  ==========================  =====================

This module is imported by ``sigil plugins``: it must stay light (standard library only).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from sigil_core import ConfigError

PROTOCOLS = ("http/protobuf", "grpc")
#: The conventions' content-capture switch: values that turn it on. ``true`` is the historical
#: form; the ``*_ONLY``/``SPAN_AND_EVENT`` forms come from opentelemetry-util-genai.
CONTENT_ON = {"true", "1", "yes", "on", "span_only", "span_and_event", "event_only"}
CONTENT_OFF = {"", "false", "0", "no", "off", "no_content"}
KEYS = {"endpoint": str, "protocol": str, "headers": dict, "service_name": str,
        "resource_attributes": dict, "capture_content": bool, "metrics": bool,
        "flush_timeout_ms": int, "enabled": bool}


class OtelSettings:
    """What the sink will do, resolved from the environment and the ``otel:`` section.

    ``endpoint`` is None when nothing is configured: the sink then stays idle. The exporter
    arguments (``exporter_kwargs``) carry only what the config file says and the environment
    does not, so the SDK keeps reading the standard variables itself (per-signal endpoints,
    certificates, compression, timeouts).
    """

    __slots__ = ("capture_content", "enabled", "endpoint", "flush_timeout_s", "headers",
                 "metrics", "protocol", "resource_attributes", "service_name", "source")

    def __init__(self, section: Mapping[str, Any] | None, env: Mapping[str, str] | None = None,
                 where: str = "the config file") -> None:
        env = os.environ if env is None else env
        section = dict(section or {})
        for key, value in section.items():
            expected = KEYS.get(key)
            if expected is None:
                raise ConfigError(f"{where}: unknown key otel.{key}; known keys: "
                                  + ", ".join(sorted(KEYS)))
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ConfigError(f"{where}: otel.{key} must be {_kind(expected)}, got "
                                  f"{type(value).__name__}")
        env_endpoint = (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip()
        file_endpoint = (section.get("endpoint") or "").strip()
        #: Where the endpoint came from: "environment", "config" or None.
        self.source = "environment" if env_endpoint else ("config" if file_endpoint else None)
        self.endpoint: str | None = env_endpoint or file_endpoint or None
        if self.endpoint and not self.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"{'OTEL_EXPORTER_OTLP_ENDPOINT' if env_endpoint else where + ': otel.endpoint'}"
                              f" must be an http:// or https:// URL, got {self.endpoint!r}")
        protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or section.get("protocol")
                    or "http/protobuf").strip().lower()
        if protocol not in PROTOCOLS:
            raise ConfigError(f"OTLP protocol {protocol!r} is not supported; use one of "
                              + ", ".join(PROTOCOLS))
        self.protocol = protocol
        self.headers: dict[str, str] = {str(k): str(v) for k, v in
                                        (section.get("headers") or {}).items()}
        self.service_name: str | None = section.get("service_name")
        self.resource_attributes: dict[str, str] = {
            str(k): str(v) for k, v in (section.get("resource_attributes") or {}).items()}
        raw = env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
        if raw is not None:
            value = raw.strip().lower()
            if value not in CONTENT_ON | CONTENT_OFF:
                raise ConfigError(
                    f"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT={raw!r} is not "
                    "understood; use true or false")
            self.capture_content = value in CONTENT_ON
        else:
            self.capture_content = bool(section.get("capture_content", False))
        disabled = (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true"
        self.enabled = not disabled and bool(section.get("enabled", True))
        metrics_exporter = (env.get("OTEL_METRICS_EXPORTER") or "").strip().lower()
        self.metrics = (metrics_exporter != "none" if metrics_exporter
                        else bool(section.get("metrics", True)))
        timeout_ms = section.get("flush_timeout_ms", 2000)
        if timeout_ms < 0:
            raise ConfigError(f"{where}: otel.flush_timeout_ms must be 0 or more, got {timeout_ms}")
        self.flush_timeout_s = timeout_ms / 1000.0

    @property
    def active(self) -> bool:
        return self.enabled and self.endpoint is not None

    def status(self) -> str:
        """The line ``sigil plugins`` shows."""
        if not self.enabled:
            return "idle: disabled (OTEL_SDK_DISABLED or otel.enabled: false)"
        if self.endpoint is None:
            return "idle: no OTLP endpoint (set OTEL_EXPORTER_OTLP_ENDPOINT or otel.endpoint)"
        content = ", with prompt/completion contents" if self.capture_content else ""
        return f"exporting to {self.endpoint} over {self.protocol}{content}"

    def signal_endpoint(self, signal: str) -> str | None:
        """The full URL of one signal (``traces`` or ``metrics``) for a config-file endpoint,
        the way the SDK builds it from ``OTEL_EXPORTER_OTLP_ENDPOINT``; None to let the SDK read
        the environment itself."""
        if self.source != "config" or self.endpoint is None:
            return None
        if self.protocol == "grpc":
            return self.endpoint
        return self.endpoint.rstrip("/") + f"/v1/{signal}"

    def exporter_kwargs(self, signal: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        endpoint = self.signal_endpoint(signal)
        if endpoint is not None:
            kwargs["endpoint"] = endpoint
        if self.headers and not os.environ.get("OTEL_EXPORTER_OTLP_HEADERS"):
            kwargs["headers"] = dict(self.headers)
        return kwargs

    def resource(self) -> dict[str, str]:
        """Resource attributes from the defaults and the config file; the environment's
        (``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``) are merged on top by the SDK's
        own detector when the pipeline is built."""
        attributes = {"service.name": "sigil", **self.resource_attributes}
        if self.service_name:
            attributes["service.name"] = self.service_name
        return attributes

    def key(self) -> tuple[Any, ...]:
        """Runs with equal settings share one exporter pipeline in a process."""
        return (self.endpoint, self.protocol, tuple(sorted(self.headers.items())),
                tuple(sorted(self.resource().items())), self.metrics,
                os.environ.get("OTEL_RESOURCE_ATTRIBUTES"), os.environ.get("OTEL_SERVICE_NAME"))


def _kind(expected: type) -> str:
    return {str: "a string", dict: "a mapping", bool: "true or false", int: "an integer"}[expected]
