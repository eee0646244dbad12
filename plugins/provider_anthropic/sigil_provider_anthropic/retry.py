"""The Anthropic SDK's middleware watching its own retries.

The SDK's middleware runs once per HTTP attempt inside its retry loop, so :class:`RetryGuard`
sees every failed attempt and hands it to :mod:`sigil_core.retries`, which bounds the total wait
(``max_total_wait_s``) and reports each retry as a ``warning`` event. When the next wait would
pass the bound, the guard answers ``x-should-retry: false`` (the SDK's documented switch) so
the SDK stops and raises at once.
"""

from __future__ import annotations

from typing import Any

from sigil_core.retries import CURRENT_CALL, answer_failed, connection_failed


class RetryGuard:
    """SDK middleware (async callable form); see the module docstring."""

    async def __call__(self, request: Any, call_next: Any) -> Any:
        state = CURRENT_CALL.get()
        if state is None:
            return await call_next(request)
        state.resume()
        try:
            response = await call_next(request)
        except Exception as exc:
            from anthropic import APIConnectionError

            connection_failed(state, exc, request.retries_taken,
                              retryable=isinstance(exc, APIConnectionError))
            raise
        http = response.http_response
        if http.status_code >= 400 and not answer_failed(state, http.status_code, http.headers,
                                                         request.retries_taken):
            http.headers["x-should-retry"] = "false"
        return response
