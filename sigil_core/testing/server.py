"""The plumbing of a local, scripted API server that a provider's real SDK talks to in tests.

A provider plugin's test server (``sigil_provider_openai.testing.server`` for example) subclasses
:class:`ScriptedServer` for the API it speaks and :class:`BaseHandler` for its routes; this module
gives both the parts that do not depend on the API:

* lifecycle on 127.0.0.1 (port 0 picks a free one), as a context manager or standalone;
* faults, queued by script (:meth:`ScriptedServer.inject`, ``POST /_test/faults``) or drawn at
  random (``fail_rate`` over ``fail_kinds``) for the server's main path;
* the call log (``GET /_test/calls``), ``POST /_test/reset``, ``GET /_test/health``;
* JSON answers, server-sent events and dropped connections.

Only the standard library's ``http.server`` is used, so the server runs wherever the tests do.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, cast

import attrs

__all__ = ["BaseHandler", "Fault", "ScriptedServer", "ServerOptions", "ServerProcess",
           "add_server_arguments", "canon", "filler", "server_options"]


@attrs.define
class ServerOptions:
    """What every scripted API server is told (an API's server subclasses it with its own
    settings, and may override a default, e.g. ``fail_kinds``). Deterministic per ``seed``."""

    #: The server's tokenizer: ``ceil(chars / chars_per_token)`` per text.
    chars_per_token: float = 4.0
    #: Text answers have exactly this many output tokens (None: a short derived answer).
    output_tokens: int | None = None
    #: Simulated model latency per call.
    latency_ms: float = 0.0
    #: Share of main-path requests that fail at random with one of ``fail_kinds``.
    fail_rate: float = 0.0
    fail_kinds: tuple[str, ...] = ("429", "500", "503")
    #: ``retry-after`` seconds sent with random failures (None: no header).
    retry_after_s: float | None = 0.05
    seed: int = 0
    #: Prompt prefixes shorter than this are not cached.
    min_cache_tokens: int = 1024
    #: When set, any other key gets a 401.
    api_key: str | None = None
    #: Fixed answers: a tool/schema name maps to its answer, "text" to the text answer.
    answers: dict[str, Any] = attrs.Factory(dict)


def add_server_arguments(parser: Any, fail_kinds: str) -> None:
    """The command-line options of a server's ``python -m`` entry that every API shares."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--output-tokens", type=int, default=None,
                        help="length of every text answer, in tokens")
    parser.add_argument("--chars-per-token", type=float, default=4.0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--fail-kinds", default=fail_kinds)
    parser.add_argument("--retry-after", type=float, default=0.05,
                        help="retry-after seconds on random failures (negative: no header)")
    parser.add_argument("--min-cache-tokens", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="accept only this key")
    parser.add_argument("--answers", default=None,
                        help="JSON file: tool/schema name -> answer (\"text\": the text answer)")


def server_options(args: Any) -> dict[str, Any]:
    """The :class:`ServerOptions` fields the :func:`add_server_arguments` options give."""
    answers: dict[str, Any] = {}
    if args.answers:
        with open(args.answers, encoding="utf-8") as fh:
            answers = json.load(fh)
    return {"chars_per_token": args.chars_per_token, "output_tokens": args.output_tokens,
            "latency_ms": args.latency_ms, "fail_rate": args.fail_rate,
            "fail_kinds": tuple(k.strip() for k in args.fail_kinds.split(",") if k.strip()),
            "retry_after_s": None if args.retry_after < 0 else args.retry_after,
            "seed": args.seed, "min_cache_tokens": args.min_cache_tokens,
            "api_key": args.api_key, "answers": answers}


def canon(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): what the servers count and hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def filler(chars: int, number: int) -> str:
    """A text answer of exactly ``chars`` characters (answer ``number`` of the server)."""
    words = f"Answer {number}. The lead shows strong interest and fits the profile. "
    return (words * (chars // len(words) + 1))[:chars]


@attrs.define
class Fault:
    """One scripted failure, consumed by the next request to ``path`` (the main path if None)."""

    kind: str
    #: Seconds for the ``retry-after`` header (429/503...); None sends no header.
    retry_after_s: float | None = None
    #: How long a "slow" answer waits before responding.
    delay_s: float = 1.0
    path: str | None = None


class ScriptedServer:
    """A threaded HTTP server on 127.0.0.1; see the module docstring.

    Subclasses set :attr:`fault_kinds`, :attr:`main_path` and :attr:`handler_class`.
    ``options`` needs ``fail_rate``, ``fail_kinds``, ``retry_after_s`` and ``seed``.
    """

    fault_kinds: ClassVar[tuple[str, ...]] = ()
    main_path: ClassVar[str] = "/"
    handler_class: ClassVar[type[BaseHandler]]

    def __init__(self, options: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._rng = random.Random(options.seed)
        self.calls: list[dict[str, Any]] = []
        #: When the request being handled on this thread arrived (``record`` stamps it).
        self._arrival = threading.local()
        handler = type("Handler", (self.handler_class,), {"server_ref": self})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ScriptedServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._thread = None

    def serve(self, banner: str | None = None) -> None:
        """Serve in the foreground (the ``python -m ...`` entry), announcing the URL first."""
        print(banner or f"listening on {self.url}", flush=True)
        try:
            self._httpd.serve_forever(poll_interval=0.05)
        except KeyboardInterrupt:
            pass
        finally:
            self._httpd.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- scripting

    def inject(self, *faults: Fault | str) -> None:
        """Queue faults; each is consumed by the next request to its path."""
        with self._lock:
            for f in faults:
                fault = f if isinstance(f, Fault) else Fault(f)
                if fault.kind not in self.fault_kinds:
                    raise ValueError(f"unknown fault {fault.kind!r}; known: "
                                     f"{', '.join(self.fault_kinds)}")
                self._faults.append(fault)

    def reset(self) -> None:
        """Forget calls and queued faults (subclasses also forget their own state)."""
        with self._lock:
            self._faults.clear()
            self.calls.clear()
            self._rng = random.Random(self.options.seed)

    def next_fault(self, path: str) -> Fault | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if (f.path or self.main_path) == path:
                    del self._faults[i]
                    return f
            opts = self.options
            if path == self.main_path and opts.fail_rate and self._rng.random() < opts.fail_rate:
                return Fault(self._rng.choice(list(opts.fail_kinds)),
                             retry_after_s=opts.retry_after_s)
        return None

    def record(self, **call: Any) -> dict[str, Any]:
        """Log a call; ``arrived_at`` is the wall-clock time (``time.time()``) its request
        arrived, for start-up benchmarks (time to the first request)."""
        call.setdefault("arrived_at", getattr(self._arrival, "at", None))
        with self._lock:
            call["n"] = len(self.calls) + 1
            self.calls.append(call)
        return call


class BaseHandler(BaseHTTPRequestHandler):
    """Request plumbing; subclasses implement :meth:`get` and :meth:`post` for their API."""

    server_ref: ClassVar[ScriptedServer]
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle plus delayed ACKs add
    # ~40 ms to every answer on loopback.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read the call log instead

    #: The cut-off body a ``malformed`` fault answers with, and the message per injected status.
    broken_body: ClassVar[bytes] = b'{"id": "broken", "obj'
    fault_messages: ClassVar[dict[int, str]] = {}

    # ----------------------------------------------------------------- to override

    def get(self, path: str) -> None:
        self.error(404, f"no route for GET {path}")

    def post(self, path: str, body: dict[str, Any] | None) -> None:
        self.error(404, f"no route for POST {path}")

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """An error answer in the API's shape."""
        self.send_json(status, {"error": {"message": message}}, headers=headers)

    # ----------------------------------------------------------------- faults

    def fail(self, path: str, body: dict[str, Any], fault: Fault) -> None:
        """Answer with an injected failure (recorded in the call log)."""
        self.server_ref.record(path=path, status=fault.kind, fault=fault.kind,
                               model=body.get("model"), stream=bool(body.get("stream")))
        if fault.kind == "drop":
            return self.drop()
        if fault.kind == "malformed":
            return self.send_raw(200, self.broken_body)
        status = int(fault.kind)
        headers = {}
        if fault.retry_after_s is not None:
            headers["retry-after"] = f"{fault.retry_after_s:g}"
        self.error(status, self.fault_messages.get(status, "error"), headers=headers)

    # ----------------------------------------------------------------- plumbing

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_raw(status, json.dumps(payload).encode(), headers)

    def send_raw(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def start_events(self) -> None:
        """Begin a server-sent-events answer (the connection closes at its end)."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True

    def emit(self, data: Any, event: str | None = None) -> None:
        """One SSE event; ``data`` is JSON-encoded unless it is already a string."""
        text = data if isinstance(data, str) else json.dumps(data)
        head = f"event: {event}\n" if event else ""
        self.wfile.write(f"{head}data: {text}\n\n".encode())
        self.wfile.flush()

    def drop(self) -> None:
        """Close the connection without an answer."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def read_body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def bearer_key(self) -> str | None:
        key = self.headers.get("x-api-key")
        auth = self.headers.get("authorization") or ""
        if not key and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        return key or None

    # ----------------------------------------------------------------- routes

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout under test): nothing to answer, nothing to report.
            self.close_connection = True

    def do_GET(self) -> None:
        server = self.server_ref
        server._arrival.at = time.time()
        path = self.path.split("?")[0]
        if path == "/_test/calls":
            with server._lock:
                self.send_json(200, list(server.calls))
        elif path == "/_test/health":
            self.send_json(200, {"ok": True})
        else:
            self.get(path)

    def do_POST(self) -> None:
        server = self.server_ref
        server._arrival.at = time.time()
        path = self.path.split("?")[0]
        body = self.read_body()
        if path == "/_test/faults":
            try:
                server.inject(*(Fault(**f) for f in (body or {}).get("faults", [])))
            except (TypeError, ValueError) as exc:
                return self.send_json(400, {"error": {"message": str(exc)}})
            return self.send_json(200, {"queued": len(server._faults)})
        if path == "/_test/reset":
            server.reset()
            return self.send_json(200, {"ok": True})
        return self.post(path, body)


class ServerProcess:
    """A test server run as ``python -m MODULE --port 0 ...`` (for end-to-end tests and benches).

    The server prints ``listening on URL`` once ready; :attr:`url` is that URL and
    :meth:`calls` reads its call log.
    """

    def __init__(self, module: str, *args: str) -> None:
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-m", module, "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        line = (self.proc.stdout.readline() if self.proc.stdout else "").strip()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"test server {module} did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1]

    @property
    def root(self) -> str:
        """``http://127.0.0.1:PORT``, whatever path the announced URL has."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def calls(self) -> list[dict[str, Any]]:
        from urllib.request import urlopen

        with urlopen(self.root + "/_test/calls", timeout=10) as answer:
            return cast("list[dict[str, Any]]", json.loads(answer.read()))

    def stop(self) -> None:
        import subprocess

        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()
