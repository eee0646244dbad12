"""A local stand-in for the Anthropic Messages API, for tests and benchmarks.

It speaks enough of the real protocol that the unmodified ``anthropic`` SDK talks to it through
``base_url``: ``POST /v1/messages`` (JSON or SSE streaming), ``POST /v1/messages/count_tokens``,
errors in the API's shape, ``retry-after`` headers. Answers are scripted: forced tool calls get a
valid instance of the tool's ``input_schema`` (see :mod:`sigil_core.testing.schema_instance`),
text answers have a
fixed or derived length, and usage figures come from a simple, documented tokenizer
(``ceil(chars / chars_per_token)`` per text, plus small per-message and tool overheads), the same
one ``count_tokens`` uses, so an exact count is exact.

Prompt caching is simulated: the prefix up to a ``cache_control`` breakpoint (tools, then system,
then messages, as the API orders them) is written on first sight and read afterwards, with a
minimum size and a TTL like the real thing.

Faults are injected by script (:meth:`MessagesServer.inject`, or ``POST /_test/faults``) or at
random (``fail_rate``): 429 with ``retry-after``, 529, 500, dropped connections, slow answers,
malformed JSON bodies, schema-invalid answers and streams cut halfway.

Run it standalone::

    python -m sigil_provider_anthropic.testing.server --port 8765 --latency-ms 200

It prints ``listening on http://127.0.0.1:PORT`` once ready. ``GET /_test/calls`` returns every
call with the usage reported for it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
import uuid
from typing import Any, ClassVar

import attrs

from sigil_core.testing.schema_instance import instance_for

# Fault is re-exported: tests script faults with it.
from sigil_core.testing.server import (  # noqa: F401
    BaseHandler,
    Fault,
    ScriptedServer,
    add_server_arguments,
    canon,
    filler,
    server_options,
)
from sigil_core.testing.server import ServerOptions as BaseOptions

#: Fault kinds the server can inject.
FAULT_KINDS = ("429", "529", "500", "503", "400", "401", "drop", "slow", "malformed",
               "bad_answer", "stream_drop")

BASE_INPUT_TOKENS = 3
MESSAGE_OVERHEAD_TOKENS = 4
#: The hidden system prompt the API adds when tools are present.
TOOL_OVERHEAD_TOKENS = 300

_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
    429: "rate_limit_error", 500: "api_error", 503: "api_error", 529: "overloaded_error",
}


@attrs.define
class ServerOptions(BaseOptions):
    """How the server answers (the shared options, and the Messages API's own).
    Every figure is deterministic for a given seed."""

    fail_kinds: tuple[str, ...] = ("429", "529", "500")
    #: Tokens per SSE text delta.
    stream_chunk_tokens: int = 16
    cache_ttl_s: float = 300.0


class Tokenizer:
    """The server's tokenizer: ``ceil(chars / chars_per_token)`` per text."""

    def __init__(self, chars_per_token: float) -> None:
        if chars_per_token < 1:
            # A real tokenizer never makes more tokens than bytes; neither does this one.
            raise ValueError("chars_per_token must be at least 1")
        self.cpt = chars_per_token

    def text(self, text: str) -> int:
        return math.ceil(len(text) / self.cpt) if text else 0

    def content(self, content: Any) -> int:
        if isinstance(content, str):
            return self.text(content)
        if isinstance(content, list):
            return sum(self.block(b) for b in content)
        return 0

    def block(self, block: Any) -> int:
        if not isinstance(block, dict):
            return self.text(str(block))
        kind = block.get("type")
        if kind == "text":
            return self.text(block.get("text", ""))
        if kind == "tool_use":
            return self.text(block.get("name", "")) + self.text(canon(block.get("input", {})))
        if kind == "tool_result":
            return self.content(block.get("content", ""))
        if kind in ("image", "document"):
            return 1000
        return self.text(canon({k: v for k, v in block.items() if k != "cache_control"}))


def _strip_cache(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_cache(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip_cache(v) for v in value]
    return value


@attrs.define
class Accounting:
    """The input side of one request: its total and how the cache splits it."""

    total: int
    input_tokens: int
    cache_read: int
    cache_write: int


class MessagesServer(ScriptedServer):
    """A threaded HTTP server on 127.0.0.1 speaking the Messages API (see the module doc)."""

    fault_kinds = FAULT_KINDS
    main_path = "/v1/messages"

    def __init__(self, options: ServerOptions | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(options or ServerOptions(), host, port)
        self.tokenizer = Tokenizer(self.options.chars_per_token)
        self._cache: dict[str, float] = {}
        self._answer_no = 0

    def reset(self) -> None:
        """Forget calls, queued faults and the cache."""
        super().reset()
        with self._lock:
            self._cache.clear()
            self._answer_no = 0

    def message_calls(self) -> list[dict[str, Any]]:
        """Successful ``/v1/messages`` calls, in order, each with its reported ``usage``."""
        with self._lock:
            return [c for c in self.calls if c["path"] == "/v1/messages" and c.get("usage")]

    # ----------------------------------------------------------------- token accounting

    def account(self, body: dict[str, Any], use_cache: bool = True) -> Accounting:
        """Count a request's input tokens and split them by the simulated cache."""
        tok = self.tokenizer
        # (tokens, canonical text, has breakpoint) for each block, in the API's prefix order.
        segments: list[tuple[int, str, bool]] = []
        tools = body.get("tools") or []
        for tool in tools:
            segments.append((tok.text(canon(_strip_cache(tool))), canon(_strip_cache(tool)),
                             "cache_control" in tool))
        system = body.get("system")
        if isinstance(system, str):
            segments.append((tok.text(system), system, False))
        elif isinstance(system, list):
            for block in system:
                segments.append((tok.block(block), canon(_strip_cache(block)),
                                 isinstance(block, dict) and "cache_control" in block))
        messages = body.get("messages") or []
        for mi, msg in enumerate(messages):
            content = msg.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else (
                content or [])
            for bi, block in enumerate(blocks):
                mark = isinstance(block, dict) and "cache_control" in block
                if body.get("cache_control") and mi == len(messages) - 1 and bi == len(blocks) - 1:
                    mark = True
                segments.append((tok.block(block) + (MESSAGE_OVERHEAD_TOKENS if bi == 0 else 0),
                                 msg.get("role", "") + canon(_strip_cache(block)), mark))
        overhead = BASE_INPUT_TOKENS + (TOOL_OVERHEAD_TOKENS if tools else 0)
        total = overhead + sum(s[0] for s in segments)

        # Cache keys are cumulative hashes of the prefix up to each breakpoint.
        digest = hashlib.sha256(str(body.get("model", "")).encode())
        breakpoints: list[tuple[str, int]] = []
        running = 0
        for tokens, text, mark in segments:
            digest.update(text.encode())
            running += tokens
            if mark:
                breakpoints.append((digest.copy().hexdigest(), running))
        read = write = 0
        now = time.monotonic()
        if not use_cache:  # count_tokens neither reads nor writes the cache
            return Accounting(total, total, 0, 0)
        with self._lock:
            for key, prefix in reversed(breakpoints):
                if prefix >= self.options.min_cache_tokens and self._cache.get(key, 0) > now:
                    read = prefix
                    self._cache[key] = now + self.options.cache_ttl_s
                    break
            if breakpoints:
                key, prefix = breakpoints[-1]
                if prefix >= self.options.min_cache_tokens and prefix > read:
                    write = prefix - read
                    self._cache[key] = now + self.options.cache_ttl_s
        return Accounting(total, total - read - write, read, write)

    # ----------------------------------------------------------------- answers

    def answer(self, body: dict[str, Any], bad: bool = False) -> tuple[list[dict], int, str]:
        """The content blocks, their output tokens and the stop reason for a request."""
        opts = self.options
        max_tokens = int(body.get("max_tokens", 1))
        tool = self._forced_tool(body)
        with self._lock:
            self._answer_no += 1
            number = self._answer_no
        if tool is not None:
            name = tool.get("name", "tool")
            if bad:
                payload: Any = {"unexpected": "malformed answer"}
            elif name in opts.answers:
                payload = opts.answers[name]
            else:
                payload = instance_for(tool.get("input_schema") or {"type": "object"})
            tokens = self.tokenizer.text(canon(payload)) + 8
            block = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": name,
                     "input": payload}
            if tokens > max_tokens:
                block["input"] = {}
                return [block], max_tokens, "max_tokens"
            return [block], tokens, "tool_use"
        if bad:
            text = "{not json"
            tokens = self.tokenizer.text(text)
        elif "text" in opts.answers:
            text = str(opts.answers["text"])
            tokens = self.tokenizer.text(text)
        elif opts.output_tokens is not None:
            tokens = opts.output_tokens
            text = filler(int(tokens * self.tokenizer.cpt), number)
        else:
            prompt = _last_user_text(body)
            text = f"Simulated answer {number}: {prompt[:160]}"
            tokens = self.tokenizer.text(text)
        if tokens > max_tokens:
            text = text[: int(max_tokens * self.tokenizer.cpt)]
            return [{"type": "text", "text": text}], max_tokens, "max_tokens"
        return [{"type": "text", "text": text}], tokens, "end_turn"

    @staticmethod
    def _forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {}
        if not tools:
            return None
        if choice.get("type") == "tool":
            return next((t for t in tools if t.get("name") == choice.get("name")), None)
        if choice.get("type") == "any":
            return tools[0]
        return None


def _last_user_text(body: dict[str, Any]) -> str:
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


# --------------------------------------------------------------------------- HTTP


class MessagesHandler(BaseHandler):
    """The Messages API routes (the plumbing is the core's :class:`BaseHandler`)."""

    server_ref: ClassVar[MessagesServer]  # narrowed from ScriptedServer
    broken_body = b'{"id": "msg_broken", "type": "message", "content": [{"ty'
    fault_messages: ClassVar[dict[int, str]] = {
        429: "Number of requests has exceeded your rate limit", 529: "Overloaded",
        500: "Internal server error", 503: "Service unavailable",
        400: "Bad request (injected)", 401: "invalid x-api-key"}

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.send_json(status, {"type": "error", "error": {
            "type": _ERROR_TYPES.get(status, "api_error"), "message": message}}, headers)

    def post(self, path: str, body: dict[str, Any] | None) -> None:
        server = self.server_ref
        if path not in ("/v1/messages", "/v1/messages/count_tokens"):
            return self.error(404, f"no route for POST {path}")
        if body is None:
            return self.error(400, "request body is not valid JSON")
        key = self.bearer_key()
        if not key or (server.options.api_key and key != server.options.api_key):
            server.record(path=path, status=401, fault=None)
            return self.error(401, "invalid x-api-key")  # never echo the key
        problem = _validate(body, path)
        if problem:
            server.record(path=path, status=400, fault=None)
            return self.error(400, problem)

        fault = server.next_fault(path)
        if fault is not None and fault.kind not in ("slow", "bad_answer", "stream_drop"):
            return self.fail(path, body, fault)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay_s)
        if server.options.latency_ms:
            time.sleep(server.options.latency_ms / 1000.0)

        counting = path == "/v1/messages/count_tokens"
        accounting = server.account(body, use_cache=not counting)
        if counting:
            server.record(path=path, status=200, fault=None, model=body.get("model"),
                          input_tokens=accounting.total)
            return self.send_json(200, {"input_tokens": accounting.total})
        content, output, stop = server.answer(body, bad=fault is not None
                                              and fault.kind == "bad_answer")
        usage = {"input_tokens": accounting.input_tokens, "output_tokens": output,
                 "cache_creation_input_tokens": accounting.cache_write,
                 "cache_read_input_tokens": accounting.cache_read}
        record = {"path": path, "status": 200, "fault": fault.kind if fault else None,
                  "model": body.get("model"), "stream": bool(body.get("stream")),
                  "max_tokens": body.get("max_tokens"), "stop_reason": stop, "usage": usage,
                  "tool": content[0].get("name") if content[0]["type"] == "tool_use" else None}
        message = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message",
                   "role": "assistant", "model": body.get("model"), "content": content,
                   "stop_reason": stop, "stop_sequence": None, "usage": usage}
        cut = fault is not None and fault.kind == "stream_drop"
        if cut:
            record["status"] = "dropped"
            record.pop("usage")
        server.record(**record)
        if body.get("stream"):
            return self._stream(message, cut=cut)
        if cut:
            return self.drop()
        self.send_json(200, message)

    def _stream(self, message: dict[str, Any], cut: bool = False) -> None:
        self.start_events()
        usage = message["usage"]
        emit = self.emit
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**usage, "output_tokens": 1}}
        emit({"type": "message_start", "message": start}, "message_start")
        emit({"type": "ping"}, "ping")
        server = self.server_ref
        step = max(1, server.options.stream_chunk_tokens)
        cpt = server.tokenizer.cpt
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                emit({"type": "content_block_start", "index": index,
                      "content_block": {"type": "text", "text": ""}}, "content_block_start")
                text = block["text"]
                width = max(1, int(step * cpt))
                pieces = [text[i:i + width] for i in range(0, len(text), width)] or [""]
                for n, piece in enumerate(pieces):
                    emit({"type": "content_block_delta", "index": index,
                          "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
                    if cut and n >= len(pieces) // 2:
                        return self.drop()
            else:
                emit({"type": "content_block_start", "index": index,
                      "content_block": {**block, "input": {}}}, "content_block_start")
                raw = json.dumps(block["input"])
                pieces = [raw[i:i + 24] for i in range(0, len(raw), 24)]
                for n, piece in enumerate(pieces):
                    emit({"type": "content_block_delta", "index": index,
                          "delta": {"type": "input_json_delta", "partial_json": piece}},
                         "content_block_delta")
                    if cut and n >= len(pieces) // 2:
                        return self.drop()
            emit({"type": "content_block_stop", "index": index}, "content_block_stop")
        # message_delta usage is cumulative: it restates the totals, it does not add to them.
        emit({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"],
                                                 "stop_sequence": None},
              "usage": dict(usage)}, "message_delta")
        emit({"type": "message_stop"}, "message_stop")


MessagesServer.handler_class = MessagesHandler


def _validate(body: dict[str, Any], path: str) -> str | None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: must be 'user' or 'assistant'"
    if path == "/v1/messages":
        mt = body.get("max_tokens")
        if not isinstance(mt, int) or mt < 1:
            return "max_tokens: must be a positive integer"
    for i, tool in enumerate(body.get("tools") or []):
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return f"tools.{i}.input_schema.type: Input should be 'object'"
    return None


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sigil_provider_anthropic.testing.server",
                                     description="A local Anthropic Messages API for tests.")
    add_server_arguments(parser, "429,529,500")
    args = parser.parse_args(argv)
    options = ServerOptions(**server_options(args))
    MessagesServer(options, host=args.host, port=args.port).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
