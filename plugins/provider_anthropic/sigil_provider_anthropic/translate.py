"""Between Sigil's LLMRequest/LLMResponse and the Messages API's JSON. No SDK import here.

Structured output uses forced tool use: the schema becomes the ``input_schema`` of one tool the
model must call, and the tool's input is the answer (``LLMResponse.data``). Schemas whose top
level is not an object are wrapped in ``{"value": ...}`` (the API wants an object) and unwrapped
on the way back.

Prompt caching: the system prompt and the tool definition are the stable prefix of Sigil's
calls, so each gets a ``cache_control`` breakpoint; the API caches tools, then system, then
messages, so a repeated call reads both from the cache.
"""

from __future__ import annotations

import json
from typing import Any

from sigil_core import (
    LLMRequest,
    LLMResponse,
    TokenUsage,
    answer_name,
    object_schema,
    unwrap,
)

EPHEMERAL = {"type": "ephemeral"}

#: Tokens the API adds when tools are present (its tool-use system prompt is ~350 tokens on
#: current models), used only in the conservative input bound.
TOOL_PROMPT_BOUND = 600
BASE_BOUND = 16


def tool_name(request: LLMRequest) -> str:
    return answer_name(request.schema_name, request.purpose)


def build_params(request: LLMRequest, model: str, *, cache: bool) -> dict[str, Any]:
    """The keyword arguments for ``client.messages.create`` (and ``count_tokens``)."""
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": [_message(m) for m in request.messages],
    }
    if request.system:
        block: dict[str, Any] = {"type": "text", "text": request.system}
        if cache:
            block["cache_control"] = dict(EPHEMERAL)
        params["system"] = [block]
    if request.schema is not None:
        name = tool_name(request)
        tool: dict[str, Any] = {
            "name": name,
            "description": (f"Give your {request.purpose} answer by calling this tool; its "
                            "arguments must match the input schema exactly."),
            "input_schema": object_schema(request.schema),
        }
        if cache:
            tool["cache_control"] = dict(EPHEMERAL)
        params["tools"] = [tool]
        params["tool_choice"] = {"type": "tool", "name": name}
    return params


def _message(message: dict[str, Any]) -> dict[str, Any]:
    role = message.get("role", "user")
    content = message.get("content", "")
    if not isinstance(content, (str, list)):
        content = json.dumps(content, default=str)
    if content == "":
        content = "(empty)"  # the API rejects empty text content
    return {"role": role, "content": content}


def input_bound(params: dict[str, Any]) -> int:
    """An upper bound on the request's input tokens, computed locally.

    A byte-level tokenizer never produces more tokens than bytes, so the UTF-8 size of the JSON
    holding the system prompt, messages and tools (which only adds quotes, keys and escapes)
    plus the API's fixed tool prompt bounds what the API will report. The gateway reserves this
    figure, so concurrent calls cannot overshoot the budget either; when it comes close to what
    is left, the gateway asks :meth:`count_input_tokens` for the exact figure instead.
    """
    parts = {k: params[k] for k in ("system", "messages", "tools") if k in params}
    size = len(json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    return size + BASE_BOUND + (TOOL_PROMPT_BOUND if "tools" in params else 0)


def usage_from(usage: Any, model: str) -> TokenUsage:
    """TokenUsage from the SDK's ``Usage`` (cache reads and writes kept apart from input)."""
    return TokenUsage(
        input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
        model=f"anthropic:{model}",
        cache_read_tokens=int(getattr(usage, "cache_read_input_tokens", 0) or 0),
        cache_write_tokens=int(getattr(usage, "cache_creation_input_tokens", 0) or 0),
    )


def to_response(message: Any, request: LLMRequest, requested_model: str) -> LLMResponse:
    """An LLMResponse from the SDK's ``Message``."""
    model = getattr(message, "model", None) or requested_model
    texts: list[str] = []
    data: Any = None
    schema = request.schema
    name = tool_name(request) if schema is not None else None
    for block in getattr(message, "content", None) or []:
        kind = getattr(block, "type", None)
        if kind == "text":
            texts.append(block.text)
        elif (kind == "tool_use" and schema is not None and block.name == name
              and data is None):
            data = unwrap(block.input, schema)
    text = "".join(texts)
    if data is not None and not text:
        # The re-ask shows the model its own answer; make that the JSON it gave.
        text = json.dumps(data, ensure_ascii=False)
    return LLMResponse(
        text=text,
        usage=usage_from(message.usage, model),
        model=f"anthropic:{model}",
        data=data,
        stop_reason=getattr(message, "stop_reason", None),
    )
