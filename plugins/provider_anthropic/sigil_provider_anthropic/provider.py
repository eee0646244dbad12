"""The ``anthropic`` provider: Sigil's LLM gateway talking to Claude through the official SDK.

The gateway (``sigil_core.llm``) owns the budget: it asks :meth:`estimate_input_tokens` for a
local figure, asks :meth:`count_input_tokens` (the count-tokens endpoint) for the exact one when
the estimate comes close to what is left, reserves input plus ``max_tokens`` (capped to what
remains), and after the call books the usage this provider reports. Our estimate is an upper
bound (see :func:`~.translate.input_bound`) and our count is exact, so the reservation always
covers what the API will charge: a run cannot end above its budget.

``anthropic`` is never imported at plugin import, but in the background from the moment a run
chooses this provider (``prepare``; see :mod:`sigil_core.preload`).
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any

from sigil_core import LLMError, LLMRequest, LLMResponse, TokenUsage
from sigil_core.preload import preload
from sigil_core.retries import (
    CURRENT_CALL,
    Attempt,
    CallState,
    IncompleteStream,
    SDKCall,
    report_retry,
)

from .settings import AnthropicSettings
from .translate import build_params, input_bound, to_response, usage_from


def _current_operation() -> Any:
    """The Sigil operation this call runs in (for warning events), if any."""
    try:
        from sigil_core import current_operation
    except ImportError:  # pragma: no cover - older cores
        return None
    return current_operation()


class AnthropicProvider:
    """Claude through ``anthropic.AsyncAnthropic``; registered as ``anthropic``.

    ``bind(config)`` returns a per-run instance carrying the ``anthropic:`` settings (the
    orchestrator calls it); an unbound instance reads the settings from the environment and
    the default config file on first use.
    """

    name = "anthropic"
    #: Above the offline provider (0): with a key set, Claude is the default.
    priority = 100
    setup_hint = "set ANTHROPIC_API_KEY (or anthropic.api_key in the config file)"

    def __init__(self, settings: AnthropicSettings | None = None, global_model: str | None = None
                 ) -> None:
        self._settings = settings
        self._global_model = global_model
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    # ----------------------------------------------------------------- configuration

    def available(self, config: Any) -> bool:
        """True when ``ANTHROPIC_API_KEY`` is set or ``anthropic.api_key`` is in the config."""
        if os.environ.get("ANTHROPIC_API_KEY"):
            return True
        return bool(config.section("anthropic").get("api_key"))

    def prepare(self) -> None:
        """Start importing the SDK in the background (about 2 s of CPU)."""
        preload("anthropic")

    def bind(self, config: Any) -> AnthropicProvider:
        """A per-run instance with the config's ``anthropic:`` section (ConfigError if bad)."""
        return AnthropicProvider(AnthropicSettings.from_config(config),
                                 global_model=config.llm.model)

    @property
    def settings(self) -> AnthropicSettings:
        if self._settings is None:
            from sigil_core import load_config

            config = load_config()
            self._settings = AnthropicSettings.from_config(config)
            self._global_model = config.llm.model
        return self._settings

    def model_for(self, request: LLMRequest) -> str:
        return self.settings.model_for(request.component, request.model, self._global_model)

    def params(self, request: LLMRequest) -> dict[str, Any]:
        """The Messages API arguments for this request."""
        return build_params(request, self.model_for(request), cache=self.settings.cache)

    # ----------------------------------------------------------------- tokens

    def estimate_input_tokens(self, request: LLMRequest) -> int:
        """An upper bound on the input tokens the API will report (no network)."""
        return input_bound(self.params(request))

    async def count_input_tokens(self, request: LLMRequest) -> int:
        """The exact input tokens, from ``POST /v1/messages/count_tokens``.

        Cache reads and writes are part of this figure (they are input the model processes).
        If counting fails, the local upper bound is returned: still safe for the budget.
        """
        params = self.params(request)
        kwargs = {k: params[k] for k in ("model", "messages", "system", "tools", "tool_choice")
                  if k in params}
        client = self._client_for_loop()
        state = CallState(max_retries=self.settings.max_retries,
                          max_total_wait_s=self.settings.max_total_wait_s)
        token = CURRENT_CALL.set(state)
        try:
            counted = await client.messages.count_tokens(**kwargs)
        except Exception:  # noqa: BLE001 - the bound is a safe answer
            return input_bound(params)
        finally:
            CURRENT_CALL.reset(token)
        exact = int(counted.input_tokens)
        # The count endpoint may differ from the charged figure by a few tokens.
        return exact + math.ceil(exact * 0.01) + 4

    # ----------------------------------------------------------------- calls

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Send the request (``max_tokens`` is already capped by the gateway)."""
        settings = self.settings
        params = self.params(request)
        model = params["model"]
        if request.temperature is not None:
            params["extra_body"] = {"temperature": request.temperature}
        client = self._client_for_loop()
        state = CallState(max_retries=settings.max_retries,
                          max_total_wait_s=settings.max_total_wait_s,
                          on_retry=lambda a, n: self._report_retry(a, n, model))
        token = CURRENT_CALL.set(state)
        partial: dict[str, Any] = {}
        try:
            if request.max_tokens >= settings.stream_min_tokens:
                message = await self._stream(client, params, partial)
            else:
                message = await client.messages.create(**params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes an LLMError
            raise self._error(exc, state, model, partial) from None
        finally:
            CURRENT_CALL.reset(token)
        return to_response(message, request, model)

    async def _stream(self, client: Any, params: dict[str, Any], partial: dict[str, Any]) -> Any:
        async with client.messages.stream(**params) as stream:
            try:
                async for _event in stream:
                    pass
            except Exception:
                snapshot = getattr(stream, "current_message_snapshot", None)
                if snapshot is not None:
                    partial["usage"] = snapshot.usage
                    partial["model"] = snapshot.model
                raise
            # The SDK folds message_delta usage in as the cumulative totals it is.
            message = await stream.get_final_message()
        if message.stop_reason is None:
            # The connection closed before message_stop: the SDK hands back what arrived.
            partial["usage"] = message.usage
            partial["model"] = message.model
            raise IncompleteStream("the stream ended before message_stop (connection dropped)")
        return message

    def _client_for_loop(self) -> Any:
        """One ``AsyncAnthropic`` per event loop (its connection pool belongs to the loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            sdk = preload("anthropic", start=False)
            anthropic = sdk.get()

            from .retry import RetryGuard

            s = self.settings
            if not s.api_key:
                raise LLMError("no Anthropic API key: set ANTHROPIC_API_KEY or anthropic.api_key "
                               "in config.yaml", code="SYSTEM_002")
            self._client = anthropic.AsyncAnthropic(
                api_key=s.api_key, base_url=s.base_url, timeout=s.timeout,
                max_retries=s.max_retries, middleware=[RetryGuard()],
            )
            self._client_loop = loop
            op = _current_operation()
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

    # ----------------------------------------------------------------- failures

    def _report_retry(self, attempt: Attempt, number: int, model: str) -> None:
        report_retry("Anthropic", "anthropic", f"anthropic:{model}", attempt, number,
                     self.settings.max_retries, self._redact)

    def _redact(self, text: str) -> str:
        key = self._settings.api_key if self._settings else None
        if key and key in text:
            text = text.replace(key, "[redacted]")
        return text

    def _error(self, exc: BaseException, state: CallState, model: str,
               partial: dict[str, Any]) -> LLMError:
        extra: dict[str, Any] = {}
        if partial.get("usage") is not None:
            u: TokenUsage = usage_from(partial["usage"], partial.get("model") or model)
            extra["partial_usage"] = {"input_tokens": u.input_tokens,
                                      "output_tokens": u.output_tokens,
                                      "cache_read_tokens": u.cache_read_tokens,
                                      "cache_write_tokens": u.cache_write_tokens}
        s = self.settings
        call = SDKCall(preload("anthropic", start=False).get(), "anthropic", model, state,
                       where="the Anthropic API",
                       unreachable=("check the network connection "
                                    f"({s.base_url or 'https://api.anthropic.com'})"),
                       key_hint="ANTHROPIC_API_KEY or anthropic.api_key in config.yaml",
                       max_retries=s.max_retries, max_total_wait_s=s.max_total_wait_s,
                       timeout=s.timeout, redact=self._redact, extra=extra)
        error: LLMError = call.error(exc, label=_error_type(exc), detail=_error_message(exc))
        return error


def _error_type(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("type"):
            return str(err["type"])
    return type(exc).__name__


def _error_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
    return str(getattr(exc, "message", "") or exc)[:300]
