"""Watching an HTTP SDK's own retries: a bound on the total wait, a warning event per retry.

The official provider SDKs (``anthropic``, ``openai``) already retry 408/409/429/5xx and dropped
connections with exponential backoff and honour ``retry-after``; providers do not add a second
retry loop. What the SDKs lack is a bound on the *total* wait and a way to tell Sigil's events
about each retry. A provider installs a hook that runs once per HTTP attempt inside the SDK's
retry loop (the Anthropic SDK's middleware, an httpx transport for the OpenAI SDK), sets a
:class:`CallState` in :data:`CURRENT_CALL` around each call, and hands every failed attempt to
:func:`answer_failed` or :func:`connection_failed`, which:

* predict the wait the SDK is about to make (``retry-after``/``retry-after-ms`` when sent, else
  the SDK's backoff ceiling ``min(0.5 * 2**n, 8)`` s);
* when that wait would take the call past ``max_total_wait_s``, tell the hook to stop the SDK
  (``x-should-retry: false``, the SDKs' documented switch, or :class:`WaitBoundExceeded`);
* otherwise record the attempt and report it through ``on_retry`` (see :func:`report_retry`:
  a ``warning`` event with ``retry_after_ms``).

This module imports no SDK.
"""

from __future__ import annotations

import contextvars
import email.utils
import time
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["CURRENT_CALL", "Attempt", "CallState", "IncompleteStream", "SDKCall",
           "WaitBoundExceeded", "answer_failed", "backoff_ceiling", "connection_failed",
           "first_line", "report_retry", "retry_after_ms", "retry_after_s", "retryable_status",
           "sdk_would_retry", "status_text"]

#: The SDKs' backoff: 0.5 s doubled per retry, at most 8 s (jitter only shortens it).
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
    """Per-call bookkeeping, found by the provider's hook through :data:`CURRENT_CALL`."""

    max_retries: int
    max_total_wait_s: float
    on_retry: Callable[[Attempt, int], None] | None = None
    waited_s: float = 0.0
    attempts: list[Attempt] = attrs.Factory(list)
    #: Set when the guard stopped the SDK because the next wait would exceed the bound.
    gave_up: Attempt | None = None
    _failed_at: float | None = None

    def resume(self) -> None:
        """An attempt starts: the time since the last failure was the SDK's wait."""
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
                except Exception:  # noqa: BLE001, S110 - reporting must never break the call
                    pass

    def fits(self, wait_s: float) -> bool:
        return self.waited_s + wait_s <= self.max_total_wait_s

    @property
    def tries(self) -> str:
        """``"3 attempts"``: how many HTTP attempts the call made, for messages."""
        n = len(self.attempts) or 1
        return f"{n} attempt{'s' if n != 1 else ''}"


CURRENT_CALL: contextvars.ContextVar[CallState | None] = contextvars.ContextVar(
    "sigil_provider_call", default=None)


class WaitBoundExceeded(Exception):
    """Raised (unchained, so the SDK does not retry it) when a dropped connection's backoff
    would exceed the total wait bound."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def retry_after_s(headers: Any) -> float | None:
    """What the server asked us to wait, as the SDKs read it (ms header first)."""
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
            parsed = email.utils.parsedate_tz(raw)
            if parsed is not None:
                return max(0.0, float(email.utils.mktime_tz(parsed) - time.time()))
    return None


def retry_after_ms(headers: Any) -> int | None:
    return ms(retry_after_s(headers))


def retryable_status(status: int) -> bool:
    """The statuses the SDKs retry (and Sigil treats as recoverable)."""
    return status in (408, 409, 429) or status >= 500


def sdk_would_retry(status: int, headers: Any) -> bool:
    """The SDKs' retry rule, restated so the guard knows which failures they will retry."""
    flag = headers.get("x-should-retry") if headers is not None else None
    if flag == "true":
        return True
    if flag == "false":
        return False
    return retryable_status(status)


def backoff_ceiling(retries_taken: int) -> float:
    return min(INITIAL_RETRY_DELAY * 2.0 ** min(retries_taken, 30), MAX_RETRY_DELAY)


def answer_failed(state: CallState, status: int, headers: Any, retries_taken: int) -> bool:
    """Record an HTTP error answer (status >= 400) of attempt ``retries_taken``.

    Returns False when the SDK must be stopped (the hook sets ``x-should-retry: false``)
    because its next wait would pass the bound; True otherwise.
    """
    will_retry = state.max_retries - retries_taken > 0 and sdk_would_retry(status, headers)
    asked = retry_after_s(headers)
    if not will_retry:
        state.failed(Attempt(status, status_text(status), ms(asked), False))
        return True
    wait = asked if asked is not None and asked > 0 else backoff_ceiling(retries_taken)
    if not state.fits(wait):
        attempt = Attempt(status, status_text(status), ms(wait), False)
        state.failed(attempt)
        state.gave_up = attempt
        return False
    state.failed(Attempt(status, status_text(status), ms(wait), True))
    return True


def connection_failed(state: CallState, exc: BaseException, retries_taken: int, *,
                      retryable: bool) -> None:
    """Record an attempt that got no answer; raises WaitBoundExceeded past the bound."""
    if not retryable or state.max_retries - retries_taken <= 0:
        state.failed(Attempt(None, describe(exc), None, False))
        return
    wait = backoff_ceiling(retries_taken)
    if not state.fits(wait):
        attempt = Attempt(None, describe(exc), ms(wait), False)
        state.failed(attempt)
        state.gave_up = attempt
        raise WaitBoundExceeded(exc) from None
    state.failed(Attempt(None, describe(exc), ms(wait), True))


def report_retry(label: str, provider: str, model: str, attempt: Attempt, number: int,
                 max_retries: int, redact: Callable[[str], str] = str) -> None:
    """A ``warning`` event for one retry, in the operation the call runs in (if any).

    ``label`` names the service for people ("Anthropic", "OpenAI"); ``model`` is the
    prefixed model id (``openai:gpt-4o``).
    """
    from .run import current_operation

    op = current_operation()
    if op is None:
        return
    from .model import ErrorInfo

    wait = f" in {attempt.retry_after_ms} ms" if attempt.retry_after_ms is not None else ""
    op.run.event(
        "warning", op.component, "llm_call",
        f"{label} call failed ({attempt.error}); retry {number}/{max_retries}{wait}",
        metadata={"provider": provider, "model": model, "attempt": number,
                  "status": attempt.status},
        error_info=ErrorInfo(
            error_type="LLMError", error_message=redact(attempt.error),
            error_code="SYSTEM_004", recoverable=True, retry_after_ms=attempt.retry_after_ms,
        ),
    )


def first_line(exc: BaseException) -> str:
    """The exception's message (with its cause's), first line, at most 300 characters."""
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or type(exc).__name__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({cause!s})"
    return text.splitlines()[0][:300]


def ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


_STATUS = {408: "request timeout", 409: "conflict", 429: "rate limited", 500: "internal error",
           502: "bad gateway", 503: "unavailable", 504: "gateway timeout", 529: "overloaded"}


def status_text(status: int) -> str:
    return f"HTTP {status} {_STATUS.get(status, 'error')}"


def describe(exc: BaseException) -> str:
    name = type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause):
        return f"{name}: {str(cause)[:200]}"
    return f"{name}: {str(exc)[:200]}" if str(exc) else name


# --------------------------------------------------------------------------- failures


class IncompleteStream(Exception):
    """A streamed answer stopped before its end (the connection dropped)."""


@attrs.define
class SDKCall:
    """How a provider's failed SDK call becomes an :class:`~sigil_core.LLMError`: the mapping
    the official SDKs share (their exception classes have the same names), worded with the
    provider's own ``where`` ("the Anthropic API", or a local server's URL) and hints.

    The provider handles its API's own statuses first (e.g. an unknown model) and hands the
    rest to :meth:`error`.
    """

    #: The imported SDK module (``anthropic``, ``openai``).
    sdk: Any
    provider: str
    model: str
    state: CallState
    #: What was called, for messages: "the Anthropic API", "http://localhost:11434/v1".
    where: str
    #: What to check when it cannot be reached ("is the server running?").
    unreachable: str
    #: Where the key is set, for a rejected key.
    key_hint: str
    max_retries: int
    max_total_wait_s: float
    timeout: float
    #: Removes the API key from any text that leaves the provider.
    redact: Callable[[str], str] = str
    #: Extra context for the error (e.g. the partial usage of a cut stream).
    extra: dict[str, Any] = attrs.Factory(dict)

    @property
    def context(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": f"{self.provider}:{self.model}",
                "attempts": len(self.state.attempts) or 1,
                "waited_ms": round(self.state.waited_s * 1000), **self.extra}

    def llm_error(self, message: str, recoverable: bool, retry_after: int | None = None,
                  code: str | None = None, **context: Any) -> Any:
        from .errors import LLMError

        return LLMError(self.redact(message), code=code, recoverable=recoverable,
                        retry_after_ms=retry_after, context={**self.context, **context})

    def error(self, exc: BaseException, label: str = "", detail: str = "") -> Any:
        """The :class:`~sigil_core.LLMError` for ``exc``. For an HTTP status error, ``label``
        names the kind ("rate_limit_error") and ``detail`` is the API's message."""
        from .errors import LLMError

        sdk, state, where = self.sdk, self.state, self.where
        tries = state.tries
        bound = f"{self.max_total_wait_s:g} s"
        retry_after = state.gave_up.retry_after_ms if state.gave_up else None
        if isinstance(exc, WaitBoundExceeded):
            return self.llm_error(
                f"cannot reach {where}: {self.unreachable} (the next retry would exceed the "
                f"{bound} wait bound after {tries}; {first_line(exc.original)})", True,
                retry_after)
        if isinstance(exc, IncompleteStream):
            return self.llm_error(f"the answer from {where} was cut off: {exc}", True)
        if isinstance(exc, sdk.APIStatusError):
            status = exc.status_code
            shown = f"HTTP {status} {label}".rstrip()
            if status in (401, 403):
                return self.llm_error(f"{where} rejected the credentials ({shown}); check "
                                      f"{self.key_hint}", False, code="SYSTEM_002",
                                      status=status)
            if retryable_status(status):
                if state.gave_up is not None:
                    msg = (f"{where} answered {shown} and asked to wait "
                           f"{(retry_after or 0) / 1000:g} s, beyond the {bound} wait bound "
                           f"(after {tries})")
                else:
                    msg = (f"{where} kept failing: {shown} after {tries} "
                           f"(max_retries={self.max_retries})")
                headers = getattr(getattr(exc, "response", None), "headers", None)
                return self.llm_error(msg, True, retry_after or retry_after_ms(headers),
                                      status=status)
            return self.llm_error(f"{where} refused the request: {shown}: {detail}", False,
                                  status=status)
        if isinstance(exc, sdk.APITimeoutError):
            return self.llm_error(f"{where} did not answer within {self.timeout:g} s "
                                  f"(after {tries})", True)
        if isinstance(exc, sdk.APIConnectionError):
            return self.llm_error(f"cannot reach {where}: {self.unreachable} ({tries}; "
                                  f"{first_line(exc)})", True)
        if isinstance(exc, (sdk.APIResponseValidationError, ValueError)):
            return self.llm_error(f"{where} sent a malformed response: {first_line(exc)}", True)
        if isinstance(exc, LLMError):
            return exc
        return self.llm_error(f"the call to {where} failed: {type(exc).__name__}: "
                              f"{first_line(exc)}", True)
