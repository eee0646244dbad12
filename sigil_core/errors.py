"""Errors Sigil raises, each carrying the error code of the original logging contract.

A :class:`SigilError` knows whether it is recoverable (the run can retry or fall back) and how
to describe itself as an :class:`~sigil_core.model.ErrorInfo` for an event. User mistakes are
:class:`UsageError` and end the CLI with exit code 2 and a one-line message, never a traceback.
"""

from __future__ import annotations

from typing import Any


class SigilError(Exception):
    """Base class: a message, an error code and whether the run may recover."""

    code: str = "SYSTEM_004"
    recoverable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        recoverable: bool | None = None,
        retry_after_ms: int | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if recoverable is not None:
            self.recoverable = recoverable
        self.retry_after_ms = retry_after_ms
        self.context = context or {}

    def __str__(self) -> str:
        return self.message


class UsageError(SigilError):
    """Bad input from the user: a clear message, exit code 2, nothing written."""

    code = "SYSTEM_002"


class ConfigError(UsageError):
    """The configuration file or an environment variable is invalid (SYSTEM_002)."""

    code = "SYSTEM_002"


class PluginError(UsageError):
    """A plugin cannot be used as installed (strict mode, a bad wrapper): exit 2, one line."""

    code = "SYSTEM_001"


class BudgetExhaustedError(SigilError):
    """The next LLM call cannot fit in what is left of the token budget (TOKEN_001)."""

    code = "TOKEN_001"
    recoverable = False


class LLMError(SigilError):
    """A model provider failed; recoverable failures may be retried by the caller."""

    code = "SYSTEM_004"


class StructuredOutputError(LLMError):
    """The model's answer did not parse against the requested schema, even after a re-ask."""

    code = "SYSTEM_004"
    recoverable = True


class PlanError(SigilError):
    """The plan is not a valid DAG (unknown dependency, cycle, duplicate step)."""

    code = "REASONING_002"
    recoverable = True


class StrategyError(SigilError):
    """A reasoning strategy failed on a step (REASONING_001)."""

    code = "REASONING_001"
    recoverable = True


class FallbackExhaustedError(SigilError):
    """Every strategy in the fallback chain failed on a step (REASONING_004)."""

    code = "REASONING_004"


class ContractError(SigilError):
    """The output did not satisfy its contract after every allowed attempt (CONTRACT_003)."""

    code = "CONTRACT_003"


class ToolError(SigilError):
    """A tool could not be found, failed, timed out or could not connect (TOOL_00x)."""

    code = "TOOL_002"
    recoverable = True


class MemoryBackendError(SigilError):
    """The memory backend failed (MEMORY_00x); the run continues without memory."""

    code = "MEMORY_001"
    recoverable = True


class StorageError(SigilError):
    """A file Sigil writes could not be written (disk full, I/O error): SYSTEM_004, naming it."""

    code = "SYSTEM_004"

    def __init__(self, message: str, *, path: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.path = path

    @classmethod
    def from_os_error(cls, path: Any, exc: OSError) -> StorageError:
        return cls(f"cannot write {path}: {exc.strerror or exc}", path=path)


class RunStopped(BaseException):
    """The run is stopping (Ctrl-C, SIGTERM, or a sibling step ended it): no new work starts.

    A BaseException, like asyncio's CancelledError, so that strategy fallbacks and plugins that
    catch ``Exception`` do not mistake a stop for a failure to recover from.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RunInterruptedError(SigilError):
    """The run was stopped by a signal (Ctrl-C / SIGINT, SIGTERM); its partial result is kept."""

    code = "SYSTEM_004"
    recoverable = False
