"""Between Sigil's LLMRequest/LLMResponse and the Chat Completions JSON. No SDK import here.

Structured output, in the order tried for an endpoint (see :mod:`.provider` for the detection):

``json_schema``
    ``response_format: {type: json_schema, json_schema: {name, schema, strict}}``; ``strict`` is
    set when the schema meets OpenAI's strict rules (every object closed with
    ``additionalProperties: false`` and every property required), since a strict request with a
    schema that does not is refused.
``tools``
    one function tool whose ``parameters`` are the schema, forced with ``tool_choice``; the
    answer is the call's ``arguments``.
``json_mode``
    ``response_format: {type: json_object}`` and the schema in the prompt; the gateway validates
    the answer (and re-asks once).

Non-object schemas are wrapped in ``{"value": ...}`` (the APIs want an object) and unwrapped on
the way back (:func:`sigil_core.object_schema`).

Usage: OpenAI's ``prompt_tokens`` include the cached ones (``prompt_tokens_details.
cached_tokens``), so Sigil's ``input_tokens`` is prompt minus cached and ``cache_read_tokens``
the cached part: ``total_tokens`` equals the server's ``prompt_tokens + completion_tokens``.
"""

from __future__ import annotations

import json
from typing import Any

from sigil_core import (
    LLMRequest,
    TokenUsage,
    answer_name,
    estimate_tokens,
    extract_json,
    needs_wrapping,
    object_schema,
    unwrap,
)

#: Tokens each message costs beyond its text in OpenAI's chat format (role, separators).
MESSAGE_OVERHEAD = 4
BASE_OVERHEAD = 3

JSON_MODE_INSTRUCTION = ("Answer with one JSON object named {name} and nothing else, matching "
                         "this JSON Schema: {schema}")


def strict_compatible(schema: Any) -> bool:
    """True when OpenAI's strict mode accepts the schema as it is."""
    if isinstance(schema, list):
        return all(strict_compatible(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or []) != set(props):
            return False
    for key in ("minLength", "maxLength", "pattern", "format", "minItems", "maxItems",
                "minimum", "maximum", "patternProperties"):
        if key in schema:
            return False
    return all(strict_compatible(v) for k, v in schema.items()
               if k in ("properties", "$defs", "definitions") and isinstance(v, dict)
               for v in v.values()) and all(
        strict_compatible(schema[k]) for k in ("items", "anyOf", "allOf") if k in schema)


def build_params(request: LLMRequest, model: str, *, mode: str, tokens_param: str
                 ) -> dict[str, Any]:
    """The keyword arguments for ``client.chat.completions.create``."""
    messages: list[dict[str, Any]] = []
    system = request.system or ""
    name = answer_name(request.schema_name, request.purpose)
    if request.schema is not None and mode == "json_mode":
        schema_text = json.dumps(object_schema(request.schema), ensure_ascii=False,
                                 separators=(",", ":"))
        system = (system + "\n\n" if system else "") + JSON_MODE_INSTRUCTION.format(
            name=name, schema=schema_text)
    if system:
        messages.append({"role": "system", "content": system})
    messages.extend(_message(m) for m in request.messages)
    params: dict[str, Any] = {"model": model, "messages": messages,
                              tokens_param: request.max_tokens}
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.tools:
        # Sigil's tools as OpenAI function tools; the model chooses (tool_choice: auto).
        params["tools"] = [{"type": "function", "function": {
            "name": function_name(t["name"]), "description": t.get("description", ""),
            "parameters": object_schema(t.get("input_schema") or {"type": "object"})}}
            for t in request.tools]
        params["tool_choice"] = "auto"
    if request.schema is None:
        return params
    schema = object_schema(request.schema)
    if mode == "json_schema":
        params["response_format"] = {"type": "json_schema", "json_schema": {
            "name": name, "schema": schema, "strict": strict_compatible(schema)}}
    elif mode == "tools":
        params["tools"] = [*params.get("tools", []), {"type": "function", "function": {
            "name": name, "parameters": schema,
            "description": (f"Give your {request.purpose} answer by calling this function; its "
                            "arguments must match the parameters schema exactly.")}}]
        params["tool_choice"] = {"type": "function", "function": {"name": name}}
    elif mode == "json_mode":
        params["response_format"] = {"type": "json_object"}
    return params


def function_name(name: str) -> str:
    """A tool's name as OpenAI accepts it (``[a-zA-Z0-9_-]{1,64}``)."""
    return answer_name(name, "tool")


def _message(message: dict[str, Any]) -> dict[str, Any]:
    role = message.get("role", "user")
    content = message.get("content", "")
    if not isinstance(content, (str, list)):
        content = json.dumps(content, default=str)
    out: dict[str, Any] = {"role": role, "content": content if content != "" else "(empty)"}
    if role == "assistant" and message.get("tool_calls"):
        out["content"] = message.get("content") or None
        out["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
            "name": function_name(c["name"]),
            "arguments": c["arguments"] if isinstance(c["arguments"], str)
            else json.dumps(c["arguments"], ensure_ascii=False)}}
            for c in message["tool_calls"]]
    if role == "tool":
        out["tool_call_id"] = message.get("tool_call_id", "")
    return out


_ENCODER: Any = None


def _encoder() -> Any:
    """tiktoken's ``o200k_base`` when installed and its tables are at hand, else False.

    tiktoken downloads its tables on first use; offline without a cached copy that fails, and
    the documented estimate is used instead (the answer is remembered for the process).
    """
    global _ENCODER
    if _ENCODER is None:
        try:
            import tiktoken

            _ENCODER = tiktoken.get_encoding("o200k_base")
        except Exception:  # noqa: BLE001 - not installed, or no tables offline
            _ENCODER = False
    return _ENCODER


def count_text(text: str) -> int:
    enc = _encoder()
    if enc:
        return len(enc.encode(text, disallowed_special=()))
    return estimate_tokens(text) if text else 0


def estimate_input(params: dict[str, Any]) -> int:
    """The pre-flight estimate of the prompt tokens: tiktoken's count when it is available,
    else Sigil's documented estimate (one token per 4 characters), over every message plus
    the tools and response schema, with the chat format's per-message overhead."""
    total = BASE_OVERHEAD
    for m in params.get("messages") or []:
        content = m.get("content")
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        total += count_text(text) + MESSAGE_OVERHEAD
    extra = {k: params[k] for k in ("tools", "response_format") if k in params}
    if extra:
        total += count_text(json.dumps(extra, ensure_ascii=False, separators=(",", ":")))
    return total


def usage_from(usage: Any, model: str) -> TokenUsage:
    """TokenUsage from the SDK's ``CompletionUsage`` (see the module docstring)."""
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    cached = min(cached, prompt)
    return TokenUsage(input_tokens=prompt - cached, output_tokens=completion,
                      model=f"openai:{model}", cache_read_tokens=cached)


def native_calls(request: LLMRequest, tool_calls: list[dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    """The calls of Sigil's tools (by their own names; arguments decoded when they parse)."""
    names = {function_name(t["name"]): t["name"] for t in request.tools}
    out = []
    for call in tool_calls:
        name = next((orig for fn, orig in names.items() if _same_name(call.get("name"), fn)),
                    None)
        if name is None:
            continue
        raw = call.get("arguments") or "{}"
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            arguments = raw  # the strategy sees what the model sent and can say so
        out.append({"id": call.get("id") or "", "name": name, "arguments": arguments})
    return out


def answer_of(request: LLMRequest, content: str | None, tool_calls: list[dict[str, Any]]
              ) -> tuple[str, Any]:
    """(text, data) of an answer: a forced function call's parsed arguments become ``data``;
    a JSON answer in the content is left to the gateway's parser (which tolerates fences)."""
    text = content or ""
    name = answer_name(request.schema_name, request.purpose)
    tools = {function_name(t["name"]) for t in request.tools}
    answers = [c for c in tool_calls if not any(_same_name(c.get("name"), t) for t in tools)]
    if request.schema is None or not answers:
        return text, None
    # Some servers return the name with spaces or another case; one answer function was
    # offered, so its call is the answer whatever it is called.
    call = next((c for c in answers if _same_name(c.get("name"), name)), answers[0])
    raw = call.get("arguments") or ""
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return raw, None  # the gateway reports the parse error and re-asks
    data = unwrap(data, request.schema)
    return text or json.dumps(data, ensure_ascii=False), data


def _same_name(got: Any, want: str) -> bool:
    def norm(s: str) -> str:
        return "".join(ch for ch in s.lower() if ch.isalnum())

    return isinstance(got, str) and norm(got) == norm(want)


def content_data(request: LLMRequest, text: str) -> Any:
    """A wrapped schema's answer from JSON content (json_schema/json_mode), else None: an
    object schema's content is parsed by the gateway, which tolerates fences and prose."""
    if request.schema is None or not needs_wrapping(request.schema):
        return None
    try:
        return unwrap(extract_json(text), request.schema)
    except ValueError:
        return None
