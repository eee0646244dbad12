"""A local stand-in for the OpenAI Chat Completions API (and the servers that copy it).

The unmodified ``openai`` SDK talks to it through ``base_url``: ``POST /v1/chat/completions``
(JSON, or SSE with ``stream_options.include_usage``), ``GET /v1/models``, errors in the API's
shape with ``retry-after``. It can also behave like the sloppier OpenAI-compatible servers:
without ``json_schema`` response formats, without tools, without JSON mode, without usage, with
spaces in the function names it returns, or with truncated JSON.

Answers are scripted: a structured request gets a valid instance of its schema
(:func:`sigil_core.testing.schema_instance.instance_for`) or the answer given for its name in
``answers`` (the ``json_schema.name``, the forced function's name, or in JSON mode the name the
prompt gives after ``named``); in JSON mode the server plays a model that reads the schema from
the prompt (the text after ``JSON Schema:``). Text answers have a fixed or derived length.

Usage comes from a documented tokenizer: ``ceil(chars / chars_per_token)`` per message content,
plus 4 per message, 3 per request, and the canonical JSON of the tools and response schema.
Prompt caching is simulated the way OpenAI does it: a prompt prefix (tools, schema, then messages
one by one) seen before is reported as ``prompt_tokens_details.cached_tokens`` (in 128-token
steps, from ``min_cache_tokens`` up; cached tokens are part of ``prompt_tokens``).

Run it standalone::

    python -m sigil_provider_openai.testing.server --port 8766 --latency-ms 200

It prints ``listening on http://127.0.0.1:PORT/v1`` once ready (the base URL to hand the SDK).
``GET /_test/calls`` lists every call with the usage reported for it.
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
from sigil_core.testing.server import (
    BaseHandler,
    ScriptedServer,
    add_server_arguments,
    canon,
    filler,
    server_options,
)
from sigil_core.testing.server import ServerOptions as BaseOptions

FAULT_KINDS = ("429", "500", "503", "400", "401", "drop", "slow", "malformed", "bad_answer",
               "truncated", "no_usage", "stream_drop")
COMPLETIONS = "/v1/chat/completions"
BASE_TOKENS = 3
MESSAGE_TOKENS = 4
CACHE_STEP = 128

_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
                404: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error",
                503: "server_error"}


@attrs.define
class ServerOptions(BaseOptions):
    """How the server answers (the shared options, and what an OpenAI-compatible server may
    lack or do sloppily); deterministic for a given seed. ``api_key`` None: no key needed
    (a local server)."""

    #: Characters per streamed content delta.
    stream_chunk_chars: int = 48
    #: The models served (``/v1/models``); None accepts any model name.
    models: tuple[str, ...] | None = None
    #: What the server supports; an unsupported feature is a 400 naming it.
    json_schema: bool = True
    tools: bool = True
    json_mode: bool = True
    #: ``stream_options`` (older servers refuse it).
    stream_options: bool = True
    #: Sloppy-server behaviours.
    usage: bool = True
    spaced_names: bool = False
    #: Refuse ``max_tokens`` and ask for ``max_completion_tokens`` (newer OpenAI models do).
    completion_tokens_param_only: bool = False
    #: Announce itself in errors like this (e.g. "Ollama"), for realistic messages.
    flavour: str = "OpenAI"


class ChatServer(ScriptedServer):
    """The Chat Completions API on 127.0.0.1 (see the module docstring)."""

    fault_kinds = FAULT_KINDS
    main_path = COMPLETIONS

    def __init__(self, options: ServerOptions | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(options or ServerOptions(), host, port)
        self._prefixes: set[str] = set()
        self._answer_no = 0

    @property
    def base_url(self) -> str:
        """What to hand the SDK (``base_url=``) or ``OPENAI_BASE_URL``."""
        return f"{self.url}/v1"

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._prefixes.clear()
            self._answer_no = 0

    def completion_calls(self) -> list[dict[str, Any]]:
        """Answered completions, in order, each with the usage reported (None if omitted)."""
        with self._lock:
            return [c for c in self.calls if c["path"] == COMPLETIONS and c["status"] == 200]

    # ----------------------------------------------------------------- tokens

    def tokens(self, text: str) -> int:
        return math.ceil(len(text) / self.options.chars_per_token) if text else 0

    def prompt_usage(self, body: dict[str, Any]) -> tuple[int, int]:
        """(prompt tokens, cached tokens) for a request; remembers its prefixes."""
        segments: list[tuple[int, str]] = []
        head = {"tools": body.get("tools"), "response_format": body.get("response_format")}
        if head["tools"] or head["response_format"]:
            blob = canon(head)
            segments.append((self.tokens(blob), blob))
        for msg in body.get("messages") or []:
            text = _content_text(msg.get("content"))
            for call in msg.get("tool_calls") or []:
                text += canon(call.get("function", {}))
            segments.append((self.tokens(text) + MESSAGE_TOKENS, f"{msg.get('role')}:{text}"))
        total = BASE_TOKENS + sum(s[0] for s in segments)
        digest = hashlib.sha256(str(body.get("model")).encode())
        running, cached, keys = BASE_TOKENS, 0, []
        with self._lock:
            for tokens, text in segments:
                digest.update(text.encode())
                running += tokens
                key = digest.hexdigest()
                keys.append(key)
                if key in self._prefixes:
                    cached = running
            self._prefixes.update(keys)
        cached = (cached // CACHE_STEP) * CACHE_STEP
        if cached < self.options.min_cache_tokens:
            cached = 0
        return total, min(cached, total)

    # ----------------------------------------------------------------- answers

    def answer(self, body: dict[str, Any], fault: str | None) -> dict[str, Any]:
        """The assistant message, its completion tokens and finish reason."""
        opts = self.options
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 4096
        with self._lock:
            self._answer_no += 1
            number = self._answer_no
        tool = _forced_function(body) or _named_function(body)
        fmt = body.get("response_format") or {}
        structured: tuple[str, dict[str, Any]] | None = None
        if tool is not None:
            structured = (tool.get("name", "tool"), tool.get("parameters") or {})
        elif fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema") or {}
            structured = (spec.get("name", "answer"), spec.get("schema") or {})
        elif fmt.get("type") == "json_object":
            structured = _schema_in_prompt(body)
        if structured is not None:
            name, schema = structured
            if fault == "bad_answer":
                payload: Any = {"unexpected": "malformed answer"}
            elif name in opts.answers:
                payload = opts.answers[name]
            else:
                payload = instance_for(schema or {"type": "object"})
            text = json.dumps(payload)
            if fault == "truncated":
                text = text[: max(1, len(text) // 2)]
            tokens = self.tokens(text) + 2
            finish = "stop"
            if tokens > limit:
                text, tokens, finish = text[: int(limit * opts.chars_per_token)], limit, "length"
            if tool is not None:
                shown = name.replace("_", " ") if opts.spaced_names else name
                call = {"id": f"call_{uuid.uuid4().hex[:20]}", "type": "function",
                        "function": {"name": shown, "arguments": text}}
                return {"message": {"role": "assistant", "content": None, "tool_calls": [call]},
                        "tokens": tokens, "finish": "tool_calls" if finish == "stop" else finish,
                        "name": name}
            return {"message": {"role": "assistant", "content": text}, "tokens": tokens,
                    "finish": finish, "name": name}
        if fault == "bad_answer":
            text = "{not json"
        elif "text" in opts.answers:
            text = str(opts.answers["text"])
        elif opts.output_tokens is not None:
            text = filler(int(opts.output_tokens * opts.chars_per_token), number)
        else:
            text = f"Simulated answer {number}: {_last_user_text(body)[:160]}"
        tokens = opts.output_tokens if opts.output_tokens is not None and "text" not in \
            opts.answers and fault != "bad_answer" else self.tokens(text)
        finish = "stop"
        if tokens > limit:
            text, tokens, finish = text[: int(limit * opts.chars_per_token)], limit, "length"
        return {"message": {"role": "assistant", "content": text}, "tokens": tokens,
                "finish": finish, "name": None}

    def problem(self, body: dict[str, Any]) -> tuple[int, str, str | None] | None:
        """A request this server refuses: (status, message, error code)."""
        opts = self.options
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return 400, "you must provide a model parameter", None
        if opts.models is not None and model not in opts.models:
            return 404, (f"The model `{model}` does not exist or you do not have access to it."),\
                "model_not_found"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, "messages: at least one message is required", None
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict) or msg.get("role") not in (
                    "system", "user", "assistant", "tool", "developer"):
                return 400, f"messages[{i}].role: invalid role", None
        if opts.completion_tokens_param_only and "max_tokens" in body:
            return 400, ("Unsupported parameter: 'max_tokens' is not supported with this model. "
                         "Use 'max_completion_tokens' instead."), "unsupported_parameter"
        for key in ("max_tokens", "max_completion_tokens"):
            if key in body and (not isinstance(body[key], int) or body[key] < 1):
                return 400, f"{key} must be a positive integer", None
        fmt = (body.get("response_format") or {}).get("type")
        if fmt == "json_schema" and not opts.json_schema:
            return 400, "response_format type 'json_schema' is not supported by this server", None
        if fmt == "json_object" and not opts.json_mode:
            return 400, "response_format type 'json_object' is not supported by this server", None
        if "stream_options" in body and not opts.stream_options:
            return 400, "Unrecognized request argument supplied: stream_options", None
        if body.get("tools") and not opts.tools:
            return 400, "tools are not supported by this server", None
        for i, tool in enumerate(body.get("tools") or []):
            fn = tool.get("function") or {}
            if tool.get("type") != "function" or not fn.get("name"):
                return 400, f"tools[{i}]: a function tool with a name is required", None
        return None


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _last_user_text(body: dict[str, Any]) -> str:
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "user":
            return _content_text(msg.get("content"))
    return ""


def _forced_function(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = [t.get("function") or {} for t in body.get("tools") or []]
    choice = body.get("tool_choice")
    if not tools:
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return next((t for t in tools if t.get("name") == name), None)
    if choice == "required":
        return tools[0]
    return None


def _named_function(body: dict[str, Any]) -> dict[str, Any] | None:
    """``tool_choice: auto``: the model calls a tool the last user message names (after a
    tool result it answers in text)."""
    messages = body.get("messages") or []
    if body.get("tool_choice") not in (None, "auto") or not messages or \
            messages[-1].get("role") != "user":
        return None
    text = _content_text(messages[-1].get("content"))
    for tool in body.get("tools") or []:
        fn = tool.get("function") or {}
        if fn.get("name") and fn["name"] in text:
            return fn
    return None


def _schema_in_prompt(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """JSON mode: the schema and name the prompt asks for, as a model would read them."""
    for msg in reversed(body.get("messages") or []):
        text = _content_text(msg.get("content"))
        at = text.rfind("JSON Schema:")
        if at < 0:
            continue
        rest = text[at + len("JSON Schema:"):].lstrip()
        try:
            schema, _ = json.JSONDecoder().raw_decode(rest)
        except ValueError:
            schema = {"type": "object"}
        name = "answer"
        named = text.rfind(" named ", 0, at)
        if named >= 0:
            name = text[named + 7:].split()[0].strip(".,:;`'\"")
        return name, schema if isinstance(schema, dict) else {"type": "object"}
    return "answer", {"type": "object"}


class ChatHandler(BaseHandler):
    server_ref: ClassVar[ChatServer]  # narrowed from ScriptedServer
    broken_body = b'{"id": "chatcmpl-broken", "object": "chat.compl'
    fault_messages: ClassVar[dict[int, str]] = {
        429: "Rate limit reached for requests", 500: "The server had an error",
        503: "The engine is currently overloaded", 400: "Bad request (injected)",
        401: "Incorrect API key provided."}

    def error(self, status: int, message: str, headers: dict[str, str] | None = None,
              code: str | None = None) -> None:
        self.send_json(status, {"error": {"message": message,
                                          "type": _ERROR_TYPES.get(status, "server_error"),
                                          "param": None, "code": code}}, headers)

    def get(self, path: str) -> None:
        server = self.server_ref
        if path == "/v1/models":
            models = server.options.models or ("any-model",)
            return self.send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "sigil-test"}
                for m in models]})
        self.error(404, f"no route for GET {path}")

    def post(self, path: str, body: dict[str, Any] | None) -> None:
        server = self.server_ref
        if path != COMPLETIONS:
            return self.error(404, f"no route for POST {path}")
        if body is None:
            return self.error(400, "We could not parse the JSON body of your request.")
        key = self.bearer_key()
        if server.options.api_key and key != server.options.api_key:
            server.record(path=path, status=401, fault=None)
            return self.error(401, "Incorrect API key provided.", code="invalid_api_key")
        problem = server.problem(body)
        if problem:
            status, message, code = problem
            server.record(path=path, status=status, fault=None, error=message,
                          model=body.get("model"))
            return self.error(status, message, code=code)
        fault = server.next_fault(path)
        kind = fault.kind if fault else None
        if fault is not None and kind in ("429", "500", "503", "400", "401", "drop",
                                          "malformed"):
            return self.fail(path, body, fault)
        if kind == "slow":
            time.sleep(fault.delay_s)  # type: ignore[union-attr]
        if server.options.latency_ms:
            time.sleep(server.options.latency_ms / 1000.0)
        prompt, cached = server.prompt_usage(body)
        answer = server.answer(body, kind)
        usage: dict[str, Any] | None = {
            "prompt_tokens": prompt, "completion_tokens": answer["tokens"],
            "total_tokens": prompt + answer["tokens"],
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        if not server.options.usage or kind == "no_usage":
            usage = None
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        reported = usage if (not stream or include_usage) else None
        record = server.record(
            path=path, status=200, fault=kind, model=body.get("model"), stream=stream,
            max_tokens=body.get("max_tokens"),
            max_completion_tokens=body.get("max_completion_tokens"),
            response_format=(body.get("response_format") or {}).get("type"),
            tool=answer["name"] if answer["message"].get("tool_calls") else None,
            name=answer["name"], finish_reason=answer["finish"], usage=reported,
            messages=len(body.get("messages") or []))
        completion = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
                      "created": int(time.time()), "model": body["model"],
                      "system_fingerprint": "fp_sigil_test",
                      "choices": [{"index": 0, "message": answer["message"], "logprobs": None,
                                   "finish_reason": answer["finish"]}]}
        if usage is not None:
            completion["usage"] = usage
        if stream:
            if kind == "stream_drop":
                record["status"] = "dropped"
                record["usage"] = None
            return self._stream(completion, reported, cut=kind == "stream_drop")
        self.send_json(200, completion)

    def _stream(self, completion: dict[str, Any], usage: dict[str, Any] | None,
                cut: bool) -> None:
        self.start_events()
        base = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint")}
        base["object"] = "chat.completion.chunk"
        choice = completion["choices"][0]
        message = choice["message"]

        def chunk(delta: dict[str, Any], finish: str | None = None) -> None:
            self.emit({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                            "finish_reason": finish}]})

        chunk({"role": "assistant", "content": ""})
        width = max(1, self.server_ref.options.stream_chunk_chars)
        if message.get("tool_calls"):
            call = message["tool_calls"][0]
            chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                   "function": {"name": call["function"]["name"],
                                                "arguments": ""}}]})
            raw = call["function"]["arguments"]
            pieces = [raw[i:i + width] for i in range(0, len(raw), width)] or [""]
            for n, piece in enumerate(pieces):
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                if cut and n >= len(pieces) // 2:
                    return self.drop()
        else:
            text = message.get("content") or ""
            pieces = [text[i:i + width] for i in range(0, len(text), width)] or [""]
            for n, piece in enumerate(pieces):
                chunk({"content": piece})
                if cut and n >= len(pieces) // 2:
                    return self.drop()
        chunk({}, choice["finish_reason"])
        if usage is not None:
            self.emit({**base, "choices": [], "usage": usage})
        self.emit("[DONE]")


ChatServer.handler_class = ChatHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sigil_provider_openai.testing.server",
                                     description="A local OpenAI Chat Completions API for tests.")
    add_server_arguments(parser, "429,500,503")
    parser.add_argument("--models", default=None, help="comma-separated models served")
    parser.add_argument("--no-json-schema", action="store_true")
    parser.add_argument("--no-tools", action="store_true")
    parser.add_argument("--no-json-mode", action="store_true")
    parser.add_argument("--no-usage", action="store_true")
    parser.add_argument("--no-stream-options", action="store_true")
    parser.add_argument("--spaced-names", action="store_true")
    args = parser.parse_args(argv)
    options = ServerOptions(
        **server_options(args),
        models=tuple(m.strip() for m in args.models.split(",")) if args.models else None,
        json_schema=not args.no_json_schema, tools=not args.no_tools,
        json_mode=not args.no_json_mode, usage=not args.no_usage,
        stream_options=not args.no_stream_options, spaced_names=args.spaced_names,
    )
    server = ChatServer(options, host=args.host, port=args.port)
    server.serve(f"listening on {server.base_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
