"""The log sink the run sees: it hands event batches to a worker thread and returns.

Everything OpenTelemetry (importing the SDK and the OTLP exporter, about half a second; turning
events into spans; exporting) happens in one background thread per process, so the run never
waits for it: ``write`` is a queue put. At the end of the run ``close`` waits for the worker to
finish the run's trace (local work), then for the export at most ``flush_timeout_ms`` (2 s by
default); past that, or when the collector refused or could not be reached, one warning line
says so and the run ends as it would have without the plugin.

This module imports only the standard library: it is loaded when a run starts.
"""

from __future__ import annotations

import os
import queue
import re
import sys
import threading
import time
from typing import Any

from .settings import OtelSettings

#: The most a run waits for the worker to build its trace (it takes milliseconds once the SDK
#: is imported; the import itself about half a second).
LOCAL_WORK_LIMIT_S = 30.0

_queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
_worker: threading.Thread | None = None
_worker_lock = threading.Lock()


def _ensure_worker() -> None:
    global _worker
    with _worker_lock:
        if _worker is None or not _worker.is_alive():
            # A daemon: an export stuck on an unreachable collector must not keep the process
            # alive after the run (the SDK's own exit handler is turned off for the same reason).
            _worker = threading.Thread(target=_work, name="sigil-otel", daemon=True)
            _worker.start()


def _work() -> None:
    traces: dict[int, Any] = {}
    while True:
        sink, kind, payload = _queue.get()
        try:
            if kind == "open":
                from .exporting import pipeline_for
                from .tracing import RunTrace

                pipeline = pipeline_for(sink.settings)
                sink.pipeline = pipeline
                sink.failures_before = pipeline.watch.snapshot()[:2]
                traces[id(sink)] = RunTrace(sink.settings, pipeline, payload)
            elif kind == "events":
                trace = traces.get(id(sink))
                if trace is not None:
                    trace.add(payload)
            elif kind == "close":
                trace = traces.pop(id(sink), None)
                if trace is not None:
                    trace.finish(payload)
                    sink.spans = trace.spans
                    sink.finished.set()
                    sink.pipeline.flush_async(sink.flushed)
                else:
                    sink.finished.set()
                    sink.flushed.set()
        except Exception as exc:  # noqa: BLE001 - the worker serves every run of the process
            sink.error = f"{type(exc).__name__}: {exc}"
            traces.pop(id(sink), None)
            sink.finished.set()
            sink.flushed.set()


class OtelRunSink:
    """One run's connection to the worker (created by ``OtelSink.bind``)."""

    name = "sink_otel"

    def __init__(self, settings: OtelSettings) -> None:
        self.settings = settings
        self.pipeline: Any = None
        self.failures_before: tuple[int, int] = (0, 0)
        self.spans = 0
        self.error: str | None = None
        self.finished = threading.Event()  # the trace is built (local work only)
        self.flushed = threading.Event()  # ... and exported
        #: How long close() waited for the worker and the export (seconds), for tests and bench.
        self.waited = 0.0

    def open(self, run: Any) -> None:
        ctx = run.ctx
        facts = {
            "session_id": ctx.session_id, "task": ctx.task, "agent": ctx.agent,
            "budget": ctx.budget, "started_at": ctx.started_at,
            "provider": run.llm.provider_name,
            "traceparent": os.environ.get("TRACEPARENT"),
            "tracestate": os.environ.get("TRACESTATE"),
        }
        _ensure_worker()
        _queue.put((self, "open", facts))

    def write(self, events: Any) -> None:
        _queue.put((self, "events", events))

    def close(self, run: Any, record: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        _queue.put((self, "close", record))
        # Building the trace is local work (the SDK's import on a first run, then the spans):
        # it is waited for, within reason, whatever the collector does. Only the export, the
        # part a collector can hold up, is bounded by flush_timeout_ms.
        self.finished.wait(LOCAL_WORK_LIMIT_S)
        in_time = self.flushed.wait(self.settings.flush_timeout_s)
        self.waited = time.perf_counter() - t0
        why = self.error
        last = None
        metrics_refused = False
        if self.pipeline is not None:
            spans_failed, metrics_failed, last = self.pipeline.watch.snapshot()
            last = _short(last)
            if why is None and spans_failed > self.failures_before[0]:
                why = last or "the collector refused the export"
            metrics_refused = metrics_failed > self.failures_before[1]
        session = record.get("session_id")
        endpoint = self.settings.endpoint
        if in_time and why is None:
            if metrics_refused:
                print(f"warning: sink_otel: {endpoint} took the trace of {session} but refused "
                      f"its metrics ({last}); for a backend that takes traces only (Jaeger, "
                      "Phoenix) set OTEL_METRICS_EXPORTER=none", file=sys.stderr)
            return
        if not in_time:
            why = (f"no answer within {self.settings.flush_timeout_s:g} s"
                   + (f" ({why or last})" if why or last else ""))
        print(f"warning: sink_otel: the trace of {session} may not have reached {endpoint}: "
              f"{why}", file=sys.stderr)

_ERRNO = re.compile(r"\[Errno -?\d+\] ([^\"')]+)")
_TRANSIENT = re.compile(r"Transient error (.+?) encountered while exporting")
_QUOTED = re.compile(r"\w+\('([^']+)'\)")


def _short(error: str | None) -> str | None:
    """The gist of an exporter's error message (they quote whole urllib3 reprs)."""
    if not error:
        return None
    m = _ERRNO.search(error)
    if m:
        return m.group(1).strip()
    m = _TRANSIENT.search(error)
    if m:
        error = m.group(1)
        quoted = _QUOTED.search(error)
        if quoted:
            return quoted.group(1)
    return error if len(error) <= 160 else error[:157] + "..."
