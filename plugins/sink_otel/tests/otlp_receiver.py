"""A real OTLP/HTTP receiver on 127.0.0.1 for the tests: decodes the protobuf requests with
``opentelemetry-proto``, the way a collector does, and keeps what it got."""

from __future__ import annotations

import gzip
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def any_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


class Receiver:
    """``with Receiver() as r``: ``r.url`` to export to, ``r.spans()`` what arrived."""

    def __init__(self, traces_only: bool = False, misbehave: str | None = None) -> None:
        """``misbehave``: ``"stall"`` (holds every export unanswered until the receiver is
        closed), ``"reject"`` (400 with a body that is not protobuf), ``"hangup"`` (closes the
        connection without an answer)."""
        self.traces_only = traces_only
        self.misbehave = misbehave
        #: Exports that arrived and are still held unanswered ("stall").
        self.held = 0
        self.released = threading.Event()
        self.trace_requests: list[ExportTraceServiceRequest] = []
        self.metric_requests: list[ExportMetricsServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/count":
                    self.send_response(404)
                    self.end_headers()
                    return
                with receiver.lock:
                    n = sum(len(ss.spans) for r in receiver.trace_requests
                            for rs in r.resource_spans for ss in rs.scope_spans)
                body = f'{{"spans": {n}}}'.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.misbehave == "stall":
                    with receiver.lock:
                        receiver.held += 1
                    receiver.released.wait()
                    return
                if receiver.misbehave == "reject":
                    self.send_response(400)
                    self.send_header("Content-Length", "9")
                    self.end_headers()
                    self.wfile.write(b"no thanks")
                    return
                elif receiver.misbehave == "hangup":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                with receiver.lock:
                    receiver.headers.append(dict(self.headers))
                    if self.path == "/v1/traces":
                        receiver.trace_requests.append(ExportTraceServiceRequest.FromString(body))
                        answer = ExportTraceServiceResponse().SerializeToString()
                    elif self.path == "/v1/metrics" and not receiver.traces_only:
                        receiver.metric_requests.append(
                            ExportMetricsServiceRequest.FromString(body))
                        answer = ExportMetricsServiceResponse().SerializeToString()
                    else:
                        self.send_response(404)
                        self.end_headers()
                        return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up on a slow answer: not the test's business

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def serve_counts(self) -> None:
        """Serve until killed (the bench runs the receiver in a process of its own)."""
        self.thread.join()

    def spans(self) -> list[dict[str, Any]]:
        out = []
        with self.lock:
            requests = list(self.trace_requests)
        for request in requests:
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append({
                            "name": s.name,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex() or None,
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "kind": s.kind,
                            "attributes": attributes(s.attributes),
                            "status_code": s.status.code,
                            "status_message": s.status.message,
                            "events": [{"name": e.name, "time": e.time_unix_nano,
                                        "attributes": attributes(e.attributes)}
                                       for e in s.events],
                            "resource": resource,
                            "scope": ss.scope.name,
                        })
        return out

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> data points (histogram points as dicts of count/sum/attributes)."""
        out: dict[str, list[Any]] = {}
        with self.lock:
            requests = list(self.metric_requests)
        for request in requests:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        points = out.setdefault(m.name, [])
                        if m.HasField("histogram"):
                            for p in m.histogram.data_points:
                                points.append({"count": p.count, "sum": p.sum,
                                               "attributes": attributes(p.attributes),
                                               "unit": m.unit})
        return out
