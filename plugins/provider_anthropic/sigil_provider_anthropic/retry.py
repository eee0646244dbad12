"""Watching the SDK's own retries: a bound on the total wait, and a warning event per retry.

The SDK already retries 408/409/429/5xx/529 and dropped connections with exponential backoff
and honours ``retry-after``; we do not add a second retry loop. What it lacks is a bound on the
*total* wait (a ``retry-after`` of an hour would be obeyed). Its middleware runs once per HTTP
attempt inside its retry loop, so :class:`RetryGuard` sees every failed attempt and:

* predicts the wait the SDK is about to make (``retry-after``/``retry-after-ms`` when sent, else
  the SDK's backoff ceiling ``min(0.5 * 2**n, 8)`` s);
* when that wait would take the call past ``max_total_wait_s``, answers ``x-should-retry: false``
  (the SDK's documented switch) so the SDK stops and raises at once;
* otherwise records the attempt and reports it (a ``warning`` event with ``retry_after_ms``).
"""

from __future__ import annotations

import contextvars
import time
from typing import Any, Callable

import attrs

#: The SDK's backoff: 0.5 s doubled per retry, at most 8 s (jitter only shortens it).
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0


@attrs.define
class Attempt:
    """One failed HTTP attempt of a call."""

    status: int | None
    error: str
    retry_after_ms: int | None
    will_retry: bool


@attrs.define
class CallState:
    """Per-call bookkeeping, found by the middleware through a context variable."""

    max_retries: int
    max_total_wait_s: float
    on_retry: Callable[[Attempt, int], None] | None = None
    waited_s: float = 0.0
    attempts: list[Attempt] = attrs.Factory(list)
    #: Set when the guard stopped the SDK because the next wait would exceed the bound.
    gave_up: Attempt | None = None
    _failed_at: float | None = None

    def resume(self) -> None:
        if self._failed_at is not None:
            self.waited_s += time.monotonic() - self._failed_at
            self._failed_at = None

    def failed(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)
        if attempt.will_retry:
            self._failed_at = time.monotonic()
            if self.on_retry is not None:
                try:
                    self.on_retry(attempt, len(self.attempts))
                except Exception:  # noqa: BLE001 - reporting must never break the call
                    pass

    def fits(self, wait_s: float) -> bool:
        return self.waited_s + wait_s <= self.max_total_wait_s


CURRENT_CALL: contextvars.ContextVar[CallState | None] = contextvars.ContextVar(
    "sigil_anthropic_call", default=None)


def retry_after_s(headers: Any) -> float | None:
    """What the server asked us to wait, as the SDK reads it (ms header first)."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return float(raw_ms) / 1000.0
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is not None:
        try:
            return float(raw)
        except ValueError:
            import email.utils

            parsed = email.utils.parsedate_tz(raw)
            if parsed is not None:
                return max(0.0, float(email.utils.mktime_tz(parsed) - time.time()))
    return None


def sdk_would_retry(status: int, headers: Any) -> bool:
    """The SDK's retry rule, restated so the guard knows which failures it will retry."""
    flag = headers.get("x-should-retry") if headers is not None else None
    if flag == "true":
        return True
    if flag == "false":
        return False
    return status in (408, 409, 429) or status >= 500


def backoff_ceiling(retries_taken: int) -> float:
    return min(INITIAL_RETRY_DELAY * 2.0 ** min(retries_taken, 30), MAX_RETRY_DELAY)


class WaitBoundExceeded(Exception):
    """Raised (unchained, so the SDK does not retry it) when a dropped connection's backoff
    would exceed the total wait bound."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


class RetryGuard:
    """SDK middleware (async callable form); see the module docstring."""

    async def __call__(self, request: Any, call_next: Any) -> Any:
        state = CURRENT_CALL.get()
        if state is None:
            return await call_next(request)
        state.resume()
        retries_left = state.max_retries - request.retries_taken
        try:
            response = await call_next(request)
        except Exception as exc:
            from anthropic import APIConnectionError

            if not isinstance(exc, APIConnectionError) or retries_left <= 0:
                state.failed(Attempt(None, _describe(exc), None, False))
                raise
            wait = backoff_ceiling(request.retries_taken)
            if not state.fits(wait):
                attempt = Attempt(None, _describe(exc), int(wait * 1000), False)
                state.failed(attempt)
                state.gave_up = attempt
                raise WaitBoundExceeded(exc) from None
            state.failed(Attempt(None, _describe(exc), int(wait * 1000), True))
            raise
        http = response.http_response
        status = http.status_code
        if status < 400:
            return response
        will_retry = retries_left > 0 and sdk_would_retry(status, http.headers)
        asked = retry_after_s(http.headers)
        if not will_retry:
            state.failed(Attempt(status, _status_text(status), _ms(asked), False))
            return response
        wait = asked if asked is not None and asked > 0 else backoff_ceiling(request.retries_taken)
        if not state.fits(wait):
            http.headers["x-should-retry"] = "false"
            attempt = Attempt(status, _status_text(status), _ms(wait), False)
            state.failed(attempt)
            state.gave_up = attempt
            return response
        state.failed(Attempt(status, _status_text(status), _ms(wait), True))
        return response


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


_STATUS = {408: "request timeout", 409: "conflict", 429: "rate limited", 500: "internal error",
           502: "bad gateway", 503: "unavailable", 504: "gateway timeout", 529: "overloaded"}


def _status_text(status: int) -> str:
    return f"HTTP {status} {_STATUS.get(status, 'error')}"


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause):
        return f"{name}: {str(cause)[:200]}"
    return f"{name}: {str(exc)[:200]}" if str(exc) else name
