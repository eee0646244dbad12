"""The ``openai`` provider: OpenAI and every OpenAI-compatible server, through the official SDK.

The gateway (``sigil_core.llm``) owns the budget: it asks :meth:`estimate_input_tokens` for the
pre-flight figure (tiktoken's count when installed, else the documented estimate), reserves it
plus ``max_tokens`` capped to what is left, and books the usage this provider reports: the
server's own ``prompt_tokens``/``completion_tokens``/``cached_tokens``. A server that reports no
usage is booked the gateway's estimate, with a warning event, never 0.

Structured output is asked for in the best way the endpoint supports (``json_schema``, then a
forced function call, then JSON mode; see :mod:`.translate`). An endpoint that refuses a way
(HTTP 400 naming it) is asked again the next way within the same call, and what worked is
remembered per endpoint and model, in memory and in ``<SIGIL_HOME>/cache/openai_endpoints.json``,
so later runs go straight to it. Which output-limit parameter the endpoint accepts
(``max_tokens`` or ``max_completion_tokens``) and whether it takes ``stream_options`` are learnt
the same way.

``openai`` is never imported at plugin import, but in the background from the moment a run
chooses this provider (``prepare``; see :mod:`sigil_core.preload`).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sigil_core import LLMError, LLMRequest, LLMResponse, TokenUsage, current_operation
from sigil_core.preload import preload
from sigil_core.retries import (
    CURRENT_CALL,
    Attempt,
    CallState,
    IncompleteStream,
    SDKCall,
    report_retry,
)

from .settings import OpenAISettings, profiles_of
from .translate import (
    answer_of,
    build_params,
    content_data,
    estimate_input,
    native_calls,
    usage_from,
)

#: The order structured output is tried in, best first.
MODES = ("json_schema", "tools", "json_mode")
CACHE_FILE = "cache/openai_endpoints.json"
NO_KEY = "sigil-no-key"  # local servers ignore the key, but the SDK wants one

#: What usually listens on a port, for the "is it running?" hint.
_SERVERS = {11434: "Ollama", 8000: "vLLM", 8080: "the llama.cpp server", 1234: "LM Studio",
            4000: "the LiteLLM proxy"}

_LEARNT: dict[str, dict[str, Any]] = {}
_LEARNT_LOCK = threading.Lock()


class Unsupported(Exception):
    """The endpoint refused a request feature (the HTTP 400 named it)."""

    def __init__(self, feature: str, message: str) -> None:
        super().__init__(message)
        self.feature = feature


class OpenAIProvider:
    """Chat Completions through ``openai.AsyncOpenAI``; registered as ``openai``.

    ``bind(config, profile=None)`` returns a per-run instance for the default endpoint or a
    named profile (the orchestrator calls it); an unbound instance reads the settings from the
    environment and the default config file on first use.
    """

    name = "openai"
    #: Above the offline provider (0), below Anthropic (100): with only an OpenAI key or base URL
    #: set, OpenAI is the default.
    priority = 90

    def __init__(self, settings: OpenAISettings | None = None, global_model: str | None = None,
                 home: Path | None = None) -> None:
        self._settings = settings
        self._global_model = global_model
        self._home = home
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    # ----------------------------------------------------------------- configuration

    setup_hint = ("set OPENAI_API_KEY, or OPENAI_BASE_URL for an OpenAI-compatible server "
                  "(or openai.api_key / openai.base_url in the config file)")

    def available(self, config: Any) -> bool:
        """True when a key or a base URL is set (env or the ``openai:`` section)."""
        if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
            return True
        section = config.section("openai")
        return bool(section.get("api_key") or section.get("base_url"))

    def prepare(self) -> None:
        """Start importing the SDK in the background (about 1 s of CPU)."""
        preload("openai")

    def profiles(self, config: Any) -> list[str]:
        """The endpoint profiles in ``openai.profiles``."""
        return sorted(profiles_of(config.section("openai")))

    def bind(self, config: Any, profile: str | None = None) -> OpenAIProvider:
        """A per-run instance (ConfigError for a bad ``openai:`` section)."""
        return OpenAIProvider(OpenAISettings.from_config(config, profile),
                              global_model=config.llm.model, home=config.home)

    @property
    def settings(self) -> OpenAISettings:
        if self._settings is None:
            from sigil_core import load_config

            config = load_config()
            self._settings = OpenAISettings.from_config(config)
            self._global_model = config.llm.model
            self._home = config.home
        return self._settings

    def model_for(self, request: LLMRequest) -> str:
        return self.settings.model_for(request.component, request.model, self._global_model)

    # ----------------------------------------------------------------- what the endpoint takes

    def _key(self, model: str) -> str:
        return f"{self.settings.url}|{model}"

    def learnt(self, model: str) -> dict[str, Any]:
        """What this endpoint and model were found to accept (structured mode, ...)."""
        key = self._key(model)
        with _LEARNT_LOCK:
            if key not in _LEARNT:
                _LEARNT[key] = dict(self._read_cache().get(key) or {})
            return dict(_LEARNT[key])

    def _learn(self, model: str, **facts: Any) -> None:
        key = self._key(model)
        with _LEARNT_LOCK:
            entry = _LEARNT.setdefault(key, {})
            if all(entry.get(k) == v for k, v in facts.items()):
                return
            entry.update(facts)
            self._write_cache(key, dict(entry))

    def _cache_path(self) -> Path | None:
        return self._home / CACHE_FILE if self._home is not None else None

    def _read_cache(self) -> dict[str, Any]:
        path = self._cache_path()
        if path is None:
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_cache(self, key: str, entry: dict[str, Any]) -> None:
        path = self._cache_path()
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            data = self._read_cache()
            data[key] = entry
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".openai_endpoints.",
                                       suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written only costs a detection next time

    def mode_for(self, model: str) -> str:
        """The structured-output mode to try first for this endpoint and model."""
        if self.settings.structured != "auto":
            return self.settings.structured
        return self.learnt(model).get("structured") or MODES[0]

    def params(self, request: LLMRequest, mode: str | None = None) -> dict[str, Any]:
        """The Chat Completions arguments for this request."""
        model = self.model_for(request)
        learnt = self.learnt(model)
        return build_params(request, model, mode=mode or self.mode_for(model),
                            tokens_param=learnt.get("tokens_param")
                            or self.settings.tokens_param())

    # ----------------------------------------------------------------- tokens

    def estimate_input_tokens(self, request: LLMRequest) -> int:
        """The pre-flight estimate of the prompt tokens (no network)."""
        return estimate_input(self.params(request))

    # ----------------------------------------------------------------- calls

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Send the request (``max_tokens`` is already capped by the gateway)."""
        settings = self.settings
        model = self.model_for(request)
        mode = self.mode_for(model) if request.schema is not None else "text"
        tried: set[str] = set()
        for _ in range(len(MODES) + 3):
            params = self.params(request, mode if mode != "text" else None)
            try:
                return await self._call(request, params, model)
            except Unsupported as refusal:
                if refusal.feature == "structured" and settings.structured == "auto":
                    tried.add(mode)
                    refused = mode
                    later = [m for m in MODES if m not in tried and
                             MODES.index(m) > MODES.index(mode)]
                    if not later:
                        raise self._refused(
                            f"{self._where()} refused every way of asking for structured output "
                            f"(json_schema, function calling, JSON mode): {refusal}",
                            model) from None
                    mode = later[0]
                    self._learn(model, structured=mode)
                    self._note(f"{self._where()} does not take {_MODE_NAMES[refused]}; asking "
                               f"with {_MODE_NAMES[mode]} from now on", model)
                elif refusal.feature == "tokens_param":
                    current = params.get("max_tokens") is not None
                    self._learn(model, tokens_param="max_completion_tokens" if current
                                else "max_tokens")
                elif refusal.feature == "stream_options":
                    self._learn(model, stream_options=False)
                else:
                    raise self._refused(f"{self._where()} refused the request: {refusal}",
                                        model) from None
        raise self._refused(f"{self._where()} kept refusing the request", model)

    def _refused(self, message: str, model: str) -> LLMError:
        return LLMError(self._redact(message), recoverable=False,
                        context={"provider": "openai", "model": f"openai:{model}"})

    async def _call(self, request: LLMRequest, params: dict[str, Any], model: str
                    ) -> LLMResponse:
        settings = self.settings
        client = self._client_for_loop()
        state = CallState(max_retries=settings.max_retries,
                          max_total_wait_s=settings.max_total_wait_s,
                          on_retry=lambda a, n: self._report_retry(a, n, model))
        token = CURRENT_CALL.set(state)
        try:
            if request.max_tokens >= settings.stream_min_tokens:
                answer = await self._stream(client, params)
            else:
                completion = await client.chat.completions.create(**params)
                answer = _from_completion(completion)
        except asyncio.CancelledError:
            raise
        except Unsupported:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes an LLMError
            raise await self._error(exc, state, model, params) from None
        finally:
            CURRENT_CALL.reset(token)
        return self._response(request, answer, model)

    async def _stream(self, client: Any, params: dict[str, Any]) -> dict[str, Any]:
        kwargs = dict(params, stream=True)
        if self.learnt(params["model"]).get("stream_options", True):
            kwargs["stream_options"] = {"include_usage": True}
        stream = await client.chat.completions.create(**kwargs)
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        answer: dict[str, Any] = {"usage": None, "finish": None, "model": None}
        async with stream:
            async for chunk in stream:
                answer["model"] = getattr(chunk, "model", None) or answer["model"]
                if getattr(chunk, "usage", None) is not None:
                    answer["usage"] = chunk.usage
                for choice in chunk.choices or []:
                    delta = choice.delta
                    if delta is not None and delta.content:
                        text.append(delta.content)
                    for tc in (delta.tool_calls or []) if delta is not None else []:
                        slot = calls.setdefault(tc.index or 0,
                                                {"id": "", "name": "", "arguments": ""})
                        slot["id"] = tc.id or slot["id"]
                        if tc.function is not None:
                            slot["name"] += tc.function.name or ""
                            slot["arguments"] += tc.function.arguments or ""
                    if choice.finish_reason:
                        answer["finish"] = choice.finish_reason
        if answer["finish"] is None:
            raise IncompleteStream("the stream ended before its finish reason (connection "
                                   "dropped)")
        answer["content"] = "".join(text)
        answer["tool_calls"] = [calls[i] for i in sorted(calls)]
        return answer

    def _response(self, request: LLMRequest, answer: dict[str, Any], model: str
                  ) -> LLMResponse:
        served = answer.get("model") or model
        text, data = answer_of(request, answer.get("content"), answer.get("tool_calls") or [])
        if data is None and request.schema is not None:
            data = content_data(request, text)
        if answer.get("usage") is not None:
            usage = usage_from(answer["usage"], served)
        else:
            # No usage block (some compatible servers): zero here, and the gateway books its
            # estimate for the request and the answer, with a warning event, never 0.
            usage = TokenUsage(0, 0, model=f"openai:{served}")
        return LLMResponse(text=text, usage=usage, model=f"openai:{served}", data=data,
                           stop_reason=answer.get("finish") or None,
                           tool_calls=native_calls(request, answer.get("tool_calls") or []))

    def _client_for_loop(self) -> Any:
        """One ``AsyncOpenAI`` per event loop (its connection pool belongs to the loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            sdk = preload("openai", start=False)
            openai = sdk.get()

            from .transport import RetryTransport

            s = self.settings
            if not s.api_key and s.is_openai:
                raise LLMError("no OpenAI API key: set OPENAI_API_KEY or openai.api_key in "
                               "config.yaml (or point OPENAI_BASE_URL / a profile at a local "
                               "server)", code="SYSTEM_002")
            self._client = openai.AsyncOpenAI(
                api_key=s.api_key or NO_KEY, base_url=s.url, organization=s.organization,
                timeout=s.timeout, max_retries=s.max_retries,
                http_client=openai.DefaultAsyncHttpxClient(transport=RetryTransport()),
            )
            self._client_loop = loop
            op = current_operation()
            if op is not None:
                op.run.on_close(self.aclose)
                sdk.report(op)
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        client, self._client, self._client_loop = self._client, None, None
        if client is not None:
            try:
                await client.close()
            except Exception:  # noqa: BLE001, S110 - closing is best effort
                pass

    async def list_models(self) -> list[str]:
        """What ``GET /v1/models`` offers (empty when the endpoint cannot say)."""
        client = self._client_for_loop()
        try:
            page = await client.models.list()
            return sorted(m.id for m in page.data)
        except Exception:  # noqa: BLE001 - a listing is only a hint
            return []

    # ----------------------------------------------------------------- events and failures

    def _where(self) -> str:
        s = self.settings
        return "the OpenAI API" if s.is_openai and s.profile is None else s.url

    def _label(self) -> str:
        s = self.settings
        return "OpenAI" if s.is_openai else (s.profile or "OpenAI-compatible")

    def _report_retry(self, attempt: Attempt, number: int, model: str) -> None:
        report_retry(self._label(), "openai", f"openai:{model}", attempt, number,
                     self.settings.max_retries, self._redact)

    def _note(self, message: str, model: str, **meta: Any) -> None:
        op = current_operation()
        if op is not None:
            op.run.event("warning", op.component, "llm_call", self._redact(message),
                         metadata={"provider": "openai", "model": f"openai:{model}", **meta})

    def _redact(self, text: str) -> str:
        key = self._settings.api_key if self._settings else None
        if key and key in text:
            text = text.replace(key, "[redacted]")
        return text

    async def _error(self, exc: BaseException, state: CallState, model: str,
                     params: dict[str, Any]) -> LLMError | Unsupported:
        openai = preload("openai", start=False).get()
        s = self.settings
        call = SDKCall(openai, "openai", model, state, where=self._where(),
                       unreachable=self._hint(), key_hint=self._key_hint(),
                       max_retries=s.max_retries, max_total_wait_s=s.max_total_wait_s,
                       timeout=s.timeout, redact=self._redact)
        detail = ""
        if isinstance(exc, openai.APIStatusError):
            # What OpenAI-compatible servers answer differently: an unknown model (listing
            # what they serve) and a refused feature (asked again another way).
            status = exc.status_code
            detail = _error_message(exc)
            if status not in (401, 403) and _model_missing(status, detail, _error_code(exc)):
                offered = await self.list_models()
                listing = f"; it offers: {', '.join(offered[:20])}" if offered else ""
                missing: LLMError = call.llm_error(
                    f"model {model!r} is not served by {s.url}{listing} (set "
                    f"{self._model_hint()})", False, code="SYSTEM_002", status=status)
                return missing
            if status in (400, 404, 415, 422, 501):
                feature = _refused_feature(detail, params)
                if feature is not None:
                    return Unsupported(feature, detail)
        error: LLMError = call.error(exc, detail=detail)
        return error

    def _hint(self) -> str:
        s = self.settings
        if s.is_openai:
            return "check the network connection (or OPENAI_BASE_URL)"
        port = urlsplit(s.url).port
        return f"is {_SERVERS[port]} running?" if port in _SERVERS else "is the server running?"

    def _key_hint(self) -> str:
        s = self.settings
        if s.profile is not None:
            return f"openai.profiles.{s.profile}.api_key (or its api_key_env)"
        return "OPENAI_API_KEY or openai.api_key in config.yaml"

    def _model_hint(self) -> str:
        s = self.settings
        if s.profile is not None:
            return f"openai.profiles.{s.profile}.model, or llm.model"
        return "openai.model, llm.model or SIGIL_MODEL"


_MODE_NAMES = {"json_schema": "response_format json_schema", "tools": "function calling",
               "json_mode": "JSON mode"}


def _from_completion(completion: Any) -> dict[str, Any]:
    choices = getattr(completion, "choices", None) or []
    if not choices:
        raise ValueError("the completion has no choices")
    choice = choices[0]
    message = choice.message
    calls = [{"id": getattr(tc, "id", "") or "",
              "name": getattr(tc.function, "name", "") or "",
              "arguments": getattr(tc.function, "arguments", "") or ""}
             for tc in (getattr(message, "tool_calls", None) or [])
             if getattr(tc, "function", None) is not None]
    return {"content": getattr(message, "content", None), "tool_calls": calls,
            "finish": choice.finish_reason, "usage": getattr(completion, "usage", None),
            "model": getattr(completion, "model", None)}


def _error_body(exc: Any) -> dict[str, Any]:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return body if isinstance(body, dict) else {}


def _error_message(exc: Any) -> str:
    body = _error_body(exc)
    message = body.get("message") if body else None
    if not message and isinstance(getattr(exc, "body", None), str):
        message = exc.body
    return str(message or getattr(exc, "message", "") or exc)[:300]


def _error_code(exc: Any) -> str | None:
    code = _error_body(exc).get("code") or getattr(exc, "code", None)
    return str(code) if code else None


def _model_missing(status: int, detail: str, code: str | None) -> bool:
    if code == "model_not_found":
        return True
    low = detail.lower()
    return status in (400, 404) and "model" in low and (
        "not found" in low or "does not exist" in low or "not exist" in low)


def _refused_feature(detail: str, params: dict[str, Any]) -> str | None:
    """Which feature of the request a 400-class refusal names, if any."""
    low = detail.lower()
    if "stream_options" in low:
        return "stream_options"
    if "max_tokens" in low or "max_completion_tokens" in low:
        return "tokens_param"
    if "response_format" in params and any(w in low for w in (
            "response_format", "json_schema", "json_object", "json mode", "structured")):
        return "structured"
    if "tools" in params and any(w in low for w in ("tool", "function")):
        return "structured"
    return None

