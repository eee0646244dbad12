"""An httpx transport that watches the ``openai`` SDK's own retries.

The OpenAI SDK has no per-attempt middleware, but every attempt goes through its HTTP client's
transport, and every attempt carries ``x-stainless-retry-count``. :class:`RetryTransport` wraps
the real transport and hands each failed attempt to :mod:`sigil_core.retries` (total-wait bound,
one ``warning`` event per retry); when the next wait would pass the bound it answers
``x-should-retry: false``, the SDK's documented switch, so the SDK stops at once.
"""

from __future__ import annotations

from typing import Any

import httpx2

from sigil_core.retries import CURRENT_CALL, answer_failed, connection_failed


class RetryTransport(httpx2.AsyncBaseTransport):
    def __init__(self, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        state = CURRENT_CALL.get()
        if state is None:
            return await self.inner.handle_async_request(request)
        state.resume()
        retries_taken = _int(request.headers.get("x-stainless-retry-count"))
        try:
            response = await self.inner.handle_async_request(request)
        except Exception as exc:
            # The SDK retries what httpx raises for transport failures (connect, read, timeout).
            connection_failed(state, exc, retries_taken,
                              retryable=isinstance(exc, httpx2.TransportError))
            raise
        if response.status_code >= 400 and not answer_failed(
                state, response.status_code, response.headers, retries_taken):
            response.headers["x-should-retry"] = "false"
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
