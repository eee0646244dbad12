"""The export pipeline: the official SDK's providers, batch processors and OTLP exporters.

One pipeline per process and settings, shared by every run in the process (a server or a
batch runs many). Nothing here blocks a run:

* spans go through the SDK's ``BatchSpanProcessor`` (a bounded queue drained by a background
  thread; a full queue drops spans instead of waiting);
* metrics are kept in memory by a ``PeriodicExportingMetricReader`` and flushed with the spans;
* at the end of a run the pipeline is flushed in a helper thread and the run waits for it at
  most ``flush_timeout_ms`` (see :mod:`sigil_sink_otel.sink`). The SDK's own ``force_flush`` exports in the calling thread with
  the exporter's full retry budget (10 s by default), and its exit handler waits up to 30 s:
  neither may hold a run, so both are replaced by this bounded wait;
* failures are counted by a thin wrapper around the exporters and reported as one warning line
  per run; the SDK's own log lines about them are kept out of the user's terminal.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator

from . import __name__ as _package
from .settings import OtelSettings

_lock = threading.Lock()
_pipelines: dict[tuple[Any, ...], Pipeline] = {}


class PresetIds(IdGenerator):
    """Span and trace ids chosen by the sink, one call ahead.

    A span is created when its operation completes (its start and end are known then), but
    its children may have been exported long before with their parent's id: so every
    operation's span id is drawn when its first event arrives and handed to the SDK here. Ids
    are random 64/128-bit values either way, as the SDK's default generator makes them.
    """

    def __init__(self) -> None:
        self._next = threading.local()

    def preset(self, span_id: int, trace_id: int) -> None:
        self._next.span_id = span_id
        self._next.trace_id = trace_id

    def clear(self) -> None:
        self._next.span_id = self._next.trace_id = None

    def generate_span_id(self) -> int:
        span_id = getattr(self._next, "span_id", None)
        if span_id is None:
            return random.getrandbits(64) or 1
        self._next.span_id = None
        return span_id

    def generate_trace_id(self) -> int:
        trace_id = getattr(self._next, "trace_id", None)
        if trace_id is None:
            return random.getrandbits(128) or 1
        self._next.trace_id = None
        return trace_id


def new_span_id() -> int:
    return random.getrandbits(64) or 1


def new_trace_id() -> int:
    return random.getrandbits(128) or 1


class ExportWatch:
    """Counts what the exporters failed to deliver, for the one warning line of a run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failed_batches = 0
        self.failed_metric_exports = 0
        self.last_error: str | None = None

    def record(self, ok: bool, error: str | None = None,
               metrics: bool = False) -> None:
        with self.lock:
            if ok:
                return
            if metrics:
                self.failed_metric_exports += 1
                self.last_error = error or self.last_error
            else:
                self.failed_batches += 1
                self.last_error = error or self.last_error

    def snapshot(self) -> tuple[int, int, str | None]:
        """Failed span batches, metric exports that failed, the last error."""
        with self.lock:
            return self.failed_batches, self.failed_metric_exports, self.last_error


class _SdkLogTap(logging.Filter):
    """Keeps the SDK's export-failure log lines off stderr and remembers the last one: the run
    prints a single warning of its own instead of a retry log per batch."""

    def __init__(self, watch: ExportWatch) -> None:
        super().__init__()
        self.watch = watch

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            with self.watch.lock:
                self.watch.last_error = record.getMessage()[:300]
            return False
        return True


class WatchedSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, watch: ExportWatch) -> None:
        self.inner = inner
        self.watch = watch

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not end the worker
            self.watch.record(False, f"{type(exc).__name__}: {exc}")
            return SpanExportResult.FAILURE
        self.watch.record(result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class WatchedMetricExporter(MetricExporter):
    def __init__(self, inner: MetricExporter, watch: ExportWatch) -> None:
        super().__init__(preferred_temporality=inner._preferred_temporality,
                         preferred_aggregation=inner._preferred_aggregation)
        self.inner = inner
        self.watch = watch

    def export(self, metrics_data: Any, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:  # noqa: BLE001
            self.watch.record(False, f"{type(exc).__name__}: {exc}", metrics=True)
            return MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self.watch.record(False, metrics=True)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def _exporters(settings: OtelSettings) -> tuple[SpanExporter, MetricExporter | None]:
    if settings.protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter,
            )
        except ImportError:
            from sigil_core import ConfigError

            raise ConfigError("OTLP over gRPC needs the grpc extra: "
                              "pip install 'sigil-sink-otel[grpc]'") from None
        span_exporter: Any = OTLPSpanExporter(**settings.exporter_kwargs("traces"))
        metric_exporter: Any = (OTLPMetricExporter(**settings.exporter_kwargs("metrics"))
                                if settings.metrics else None)
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )

        span_exporter = HttpSpanExporter(**settings.exporter_kwargs("traces"))
        metric_exporter = (HttpMetricExporter(**settings.exporter_kwargs("metrics"))
                           if settings.metrics else None)
    return span_exporter, metric_exporter


class Pipeline:
    """A tracer provider (and meter provider) with OTLP exporters, for one set of settings."""

    def __init__(self, settings: OtelSettings) -> None:
        self.settings = settings
        self.watch = ExportWatch()
        self.tap = _SdkLogTap(self.watch)
        # A filter sees only the records of its own logger, not its children's: tap each module
        # that logs about failed exports.
        for name in _EXPORTER_LOGGERS:
            logging.getLogger(name).addFilter(self.tap)
        resource = (Resource.create({}).merge(Resource(settings.resource()))
                    .merge(OTELResourceDetector().detect()))
        self.resource = resource
        self.ids = PresetIds()
        span_exporter, metric_exporter = _exporters(settings)
        self.span_processor = BatchSpanProcessor(WatchedSpanExporter(span_exporter, self.watch))
        # shutdown_on_exit=False: the SDK's exit handler waits up to 30 s for an unreachable
        # collector; runs flush themselves with a bounded wait instead.
        self.tracer_provider = TracerProvider(resource=resource, id_generator=self.ids,
                                              shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(self.span_processor)
        self.tracer = self.tracer_provider.get_tracer(_package, _version())
        self.meter_provider: MeterProvider | None = None
        self.meter: Any = None
        if metric_exporter is not None:
            # A long interval: metrics are flushed at the end of each run with the spans.
            reader = PeriodicExportingMetricReader(
                WatchedMetricExporter(metric_exporter, self.watch),
                export_interval_millis=60_000)
            self.meter_provider = MeterProvider(resource=resource, metric_readers=[reader],
                                                shutdown_on_exit=False)
            self.meter = self.meter_provider.get_meter(_package, _version())

    def flush_async(self, done: threading.Event) -> None:
        """Export what is queued in a helper thread; ``done`` is set when it is out. The SDK's
        ``force_flush`` exports in the calling thread with the exporter's whole retry budget,
        so the caller waits on ``done`` with its own bound instead."""

        def work() -> None:
            try:
                self.tracer_provider.force_flush()
                if self.meter_provider is not None:
                    self.meter_provider.force_flush()
            finally:
                done.set()

        threading.Thread(target=work, name="sigil-otel-flush", daemon=True).start()


#: Loggers of the OTLP exporters' modules, whose records do not pass through parent filters.
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.metrics._internal.export",
)


def pipeline_for(settings: OtelSettings) -> Pipeline:
    key = settings.key()
    with _lock:
        pipeline = _pipelines.get(key)
        if pipeline is None:
            pipeline = _pipelines[key] = Pipeline(settings)
        return pipeline


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("sigil-sink-otel")
    except Exception:  # noqa: BLE001 - a source checkout without metadata
        return "0"
