"""The data model: every value that crosses a boundary (hooks, files, the wire) is an attrs class.

One cattrs converter, :data:`converter`, turns them into JSON-ready dicts and back. Optional
fields that are ``None`` are left out of the dicts, as the logging contract asks. Structuring
errors name the path of the bad value (``$.steps[0].name``), see :func:`structure`.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import attrs
import cattrs
import orjson
from cattrs.gen import make_dict_unstructure_fn, override

T = TypeVar("T")

Level = Literal["trace", "debug", "info", "warning", "error", "critical"]


def utcnow() -> datetime:
    return datetime.now(UTC)


_clock = {"sec": -1, "prefix": ""}


def now_iso_ms() -> str:
    """The current UTC time as an event timestamp; formats each second once."""
    ms = time.time_ns() // 1_000_000
    sec, milli = divmod(ms, 1000)
    if sec != _clock["sec"]:
        _clock["prefix"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _clock["sec"] = sec
    return f"{_clock['prefix']}.{milli:03d}Z"


def iso_ms(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds and a Z, as every timestamp in the logs."""
    m = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return (f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:"
            f"{m.second:02d}.{m.microsecond // 1000:03d}Z")


# --------------------------------------------------------------------------- tokens and budget


@attrs.define(frozen=True)
class TokenUsage:
    """Tokens one LLM call (or a sum of calls) consumed.

    ``total_tokens`` counts every token the model processed: input, output, and the prompt-cache
    reads and writes a provider reports apart from ``input_tokens`` (Anthropic does). That is the
    figure the budget is charged.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = attrs.field(default=None)
    model: str | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    #: How much of ``total_tokens`` is an estimate rather than the provider's report (a call
    #: cut short when its run stopped is booked at its reservation).
    estimated_tokens: int = 0

    def __attrs_post_init__(self) -> None:
        if self.total_tokens is None:
            total = (
                self.input_tokens
                + self.output_tokens
                + (self.cache_read_tokens or 0)
                + (self.cache_write_tokens or 0)
            )
            object.__setattr__(self, "total_tokens", total)

    @classmethod
    def zero(cls) -> TokenUsage:
        # Frozen, so one is shared: every operation of a run starts from it.
        if cls is TokenUsage:
            return _ZERO_USAGE
        return cls(0, 0)

    def __add__(self, other: TokenUsage) -> TokenUsage:
        # On the path of every LLM call (booked to the operation and its record): positional
        # construction, no closure.
        a_read, b_read = self.cache_read_tokens, other.cache_read_tokens
        a_write, b_write = self.cache_write_tokens, other.cache_write_tokens
        model = self.model if self.model == other.model or other.model is None else (
            other.model if self.model is None else "mixed")
        return TokenUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.total_tokens + other.total_tokens,
            model,
            None if a_read is None and b_read is None else (a_read or 0) + (b_read or 0),
            None if a_write is None and b_write is None else (a_write or 0) + (b_write or 0),
            self.estimated_tokens + other.estimated_tokens,
        )


_ZERO_USAGE = TokenUsage(0, 0)


@attrs.define(frozen=True)
class BudgetSnapshot:
    total_budget: int
    used: int
    remaining: int
    percentage_used: float


@attrs.define
class OperationTokenRecord:
    """Tokens booked to one operation (its own LLM calls, not its children's)."""

    operation_id: str
    component: str
    operation: str
    phase: str | None
    tokens: TokenUsage
    calls: int = 0


@attrs.define
class ExecutionTokenSummary:
    """The spec's token summary of one run; totals equal the sum of the operations."""

    session_id: str
    total_tokens: int
    input_tokens: int
    output_tokens: int
    budget_total: int
    budget_used: int
    budget_remaining: int
    percentage_used: float
    by_component: dict[str, int]
    by_phase: dict[str, int]
    by_operation: list[OperationTokenRecord]
    llm_calls: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    #: The part of ``total_tokens`` that is estimated (calls cut short by a stop), not reported.
    estimated_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The spec's layout (``budget`` nested, ``operations`` list)."""
        return {
            "session_id": self.session_id,
            "total_tokens": self.total_tokens,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "llm_calls": self.llm_calls,
            "estimated_tokens": self.estimated_tokens,
            "budget": {
                "total": self.budget_total,
                "used": self.budget_used,
                "remaining": self.budget_remaining,
                "percentage_used": round(self.percentage_used, 2),
            },
            "by_component": dict(self.by_component),
            "by_phase": dict(self.by_phase),
            "operations": [unstructure(op) for op in self.by_operation],
        }


# --------------------------------------------------------------------------- events


@attrs.define
class ErrorInfo:
    error_type: str
    error_message: str
    error_code: str
    stack_trace: str | None = None
    recoverable: bool = False
    retry_after_ms: int | None = None
    context: dict[str, Any] | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, *, with_trace: bool = False) -> ErrorInfo:
        from .errors import SigilError

        trace = None
        if with_trace:
            import traceback

            trace = "".join(traceback.format_exception(exc))
        if isinstance(exc, SigilError):
            return cls(
                error_type=type(exc).__name__,
                error_message=exc.message,
                error_code=exc.code,
                stack_trace=trace,
                recoverable=exc.recoverable,
                retry_after_ms=exc.retry_after_ms,
                context=exc.context or None,
            )
        return cls(
            error_type=type(exc).__name__,
            error_message=str(exc) or type(exc).__name__,
            error_code="SYSTEM_004",
            stack_trace=trace,
            recoverable=False,
        )


@attrs.define
class LogEvent:
    """One structured event, as written to the session files and streamed to monitors."""

    id: str
    timestamp: str
    level: str
    component: str
    operation: str
    message: str
    session_id: str
    correlation_id: str
    operation_id: str
    parent_operation_id: str | None = None
    duration_ms: float | None = None
    tokens_used: TokenUsage | None = None
    metadata: dict[str, Any] | None = None
    error_info: ErrorInfo | None = None
    budget_snapshot: BudgetSnapshot | None = None
    #: In-process objects behind the event for sinks that can use them (an LLM call's request
    #: and response); never serialised, so prompt contents stay out of the files.
    payload: Any = attrs.field(default=None, repr=False, eq=False)
    #: The attempt of a resumed session (2, 3, ...); omitted for the first.
    attempt: int | None = None
    _line: str | None = attrs.field(default=None, init=False, repr=False, eq=False)

    def json_line(self) -> str:
        """The event as one compact JSON line, serialised once and shared by every sink."""
        if self._line is None:
            self._line = _encode(self.to_dict())
        return self._line

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; empty optional fields are omitted. Hand-written: it is the hot path."""
        d: dict[str, Any] = {
            "id": self.id,
            "timestamp": self.timestamp,
            "level": self.level,
            "component": self.component,
            "operation": self.operation,
            "message": self.message,
            "session_id": self.session_id,
            "correlation_id": self.correlation_id,
            "operation_id": self.operation_id,
        }
        if self.parent_operation_id:
            d["parent_operation_id"] = self.parent_operation_id
        if self.duration_ms is not None:
            d["duration_ms"] = self.duration_ms
        if self.tokens_used is not None:
            d["tokens_used"] = _usage_dict(self.tokens_used)
        if self.metadata:
            d["metadata"] = self.metadata
        if self.error_info is not None:
            d["error_info"] = unstructure(self.error_info)
        if self.attempt is not None:
            d["attempt"] = self.attempt
        if self.budget_snapshot is not None:
            b = self.budget_snapshot
            d["budget_snapshot"] = {
                "total_budget": b.total_budget,
                "used": b.used,
                "remaining": b.remaining,
                "percentage_used": b.percentage_used,
            }
        return d


def _encode(data: dict[str, Any]) -> str:
    # orjson rather than json: events are the hot path (DESIGN §8 wants >= 50,000 events/s into
    # the file sinks) and it encodes an event about 8x faster than the standard library.
    return orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _usage_dict(u: TokenUsage) -> dict[str, Any]:
    d: dict[str, Any] = {
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
    }
    if u.model is not None:
        d["model"] = u.model
    if u.cache_read_tokens is not None:
        d["cache_read_tokens"] = u.cache_read_tokens
    if u.cache_write_tokens is not None:
        d["cache_write_tokens"] = u.cache_write_tokens
    if u.estimated_tokens:
        d["estimated_tokens"] = u.estimated_tokens
    return d


# --------------------------------------------------------------------------- run inputs


@attrs.define
class ExecutionContext:
    """What the run was asked to do; created in the initialize phase."""

    session_id: str
    correlation_id: str
    task: str
    budget: int
    started_at: datetime
    agent: str | None = None
    monitor: bool = False
    verbose: bool = False
    output_file: str | None = None
    dry_run: bool = False
    #: 1 for a new session; 2, 3, ... for each resumption of it (``--resume``).
    attempt: int = 1


@attrs.define
class RouteDecision:
    """The router's verdict: intent, complexity 0.0-1.0, handler and reasoning strategy."""

    intent: str
    complexity: float
    handler: str = "executor"
    reasoning_strategy: str = "chain_of_thought"
    rationale: str = ""
    source: str = "llm"  # "llm" | "fast_path" | "agent" | plugin-defined

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.complexity, (int, float)) or math.isnan(self.complexity):
            raise ValueError(f"complexity must be a number, got {self.complexity!r}")
        self.complexity = min(1.0, max(0.0, float(self.complexity)))


@attrs.define
class PlanStep:
    """One node of the plan DAG, with the spec's fields."""

    name: str
    description: str
    inputs: list[str] = attrs.Factory(list)
    outputs: list[str] = attrs.Factory(list)
    complexity: str = "moderate"
    dependencies: list[str] = attrs.Factory(list)
    tools_required: list[str] = attrs.Factory(list)
    needs_contract: bool = False
    #: A plan may name the step's strategy; else the strategy policy fills it in.
    reasoning_strategy: str | None = None
    estimated_tokens: int | None = None
    #: Why the step got its strategy (set with it by the strategy policy).
    strategy_reason: str | None = None


@attrs.define
class Plan:
    goal: str
    steps: list[PlanStep]
    id: str = ""
    estimated_tokens: int = 0

    def step(self, name: str) -> PlanStep:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


# --------------------------------------------------------------------------- memory


@attrs.define
class MemoryItem:
    """A typed fact remembered across runs."""

    content: str
    memory_type: str = "fact"
    confidence: float = 0.8
    category: str | None = None
    id: str | None = None
    source_session_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    times_seen: int = 1
    score: float | None = None
    #: Where the fact came from: the provider and model of the run that produced it
    #: ("offline" for the offline model, "user" for `sigil memory add`).
    provider: str | None = None
    model: str | None = None
    #: What the fact is about, e.g. "John Smith" and "lead status": a newer fact with the same
    #: subject and attribute supersedes the older one.
    subject: str | None = None
    attribute: str | None = None


@attrs.define
class MemoryContext:
    items: list[MemoryItem] = attrs.Factory(list)
    categories: list[str] = attrs.Factory(list)
    metadata: dict[str, Any] = attrs.Factory(dict)


@attrs.define
class ExtractionResult:
    stored: list[MemoryItem] = attrs.Factory(list)
    metadata: dict[str, Any] = attrs.Factory(dict)


# --------------------------------------------------------------------------- reasoning results


@attrs.define
class ReasoningResult:
    """What a strategy returns for one step."""

    output: Any
    confidence: float = 0.8
    tool_params: dict[str, dict[str, Any]] = attrs.Factory(dict)
    metadata: dict[str, Any] = attrs.Factory(dict)


@attrs.define
class StepResult:
    step_name: str
    output: Any
    tokens_used: TokenUsage = attrs.Factory(TokenUsage.zero)
    success: bool = True
    strategy: str | None = None
    confidence: float | None = None
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None


@attrs.define
class ExecutionResult:
    plan_id: str
    step_results: dict[str, StepResult] = attrs.Factory(dict)
    tokens_used: TokenUsage = attrs.Factory(TokenUsage.zero)
    final_step: str | None = None
    #: The facts worth remembering that the final step's answer carried (extraction folded
    #: into that call): ``{"facts": [...], "model": "provider:model"}``; None when it carried
    #: none, and the extract phase asks the model itself.
    remembered: dict[str, Any] | None = None

    @property
    def success(self) -> bool:
        return all(r.success for r in self.step_results.values())

    @property
    def final_output(self) -> Any:
        if self.final_step and self.final_step in self.step_results:
            return self.step_results[self.final_step].output
        return None


# --------------------------------------------------------------------------- contracts


@attrs.define
class Deliverable:
    """One field the output must carry. ``rules`` are expressions over ``value`` (see rules.py)."""

    name: str
    type: str = "string"  # string | integer | number | boolean | array | object | any
    description: str = ""
    required: bool = True
    rules: list[str] = attrs.Factory(list)
    #: For an object: its keys and what each holds (all required in the schema sent to models).
    properties: dict[str, str] = attrs.Factory(dict)
    #: Example values, sent with the schema (JSON Schema ``examples``).
    examples: list[Any] = attrs.Factory(list)


@attrs.define
class Contract:
    name: str
    deliverables: list[Deliverable]
    description: str = ""
    failure_strategy: str = "retry"  # retry | fallback | fail
    max_retries: int = 2
    #: Words in a task that select this contract for a run with no agent naming one.
    keywords: list[str] = attrs.Factory(list)
    #: A plan that usually serves the contract (step dicts as the planner writes them): the
    #: planner shows it to the model as a suggestion; the offline model follows it.
    suggested_steps: list[dict[str, Any]] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        if self.failure_strategy not in ("retry", "fallback", "fail"):
            raise ValueError(
                f"failure_strategy must be retry, fallback or fail, not {self.failure_strategy!r}"
            )
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")


@attrs.define
class ValidationResult:
    success: bool
    contract_name: str
    passed_deliverables: list[str] = attrs.Factory(list)
    missing_deliverables: list[str] = attrs.Factory(list)
    failed_rules: list[str] = attrs.Factory(list)
    feedback: str | None = None
    attempt: int = 1
    #: Deliverables whose value is (or holds) an offline placeholder: checked for shape only.
    placeholders: list[str] = attrs.Factory(list)

    @property
    def problems(self) -> list[str]:
        return [f"missing: {m}" for m in self.missing_deliverables] + list(self.failed_rules)


# --------------------------------------------------------------------------- agents


@attrs.define
class Agent:
    """A named agent definition: instructions, tools, contract and strategy preferences."""

    name: str
    description: str = ""
    instructions: str = ""
    tools: list[str] = attrs.Factory(list)
    contract: str | None = None
    strategy_preferences: list[str] = attrs.Factory(list)
    version: int = 1
    source: str = "builtin"


# --------------------------------------------------------------------------- the outcome


@attrs.define
class OrchestrationResult:
    """What `sigil orchestrate` returns and writes with --output."""

    session_id: str
    success: bool
    task: str
    intent: str | None = None
    output: Any = None
    route: RouteDecision | None = None
    plan: Plan | None = None
    validation: ValidationResult | None = None
    steps: dict[str, StepResult] = attrs.Factory(dict)
    error: ErrorInfo | None = None
    partial: bool = False
    provider: str | None = None
    notes: list[str] = attrs.Factory(list)
    tokens: ExecutionTokenSummary | None = None


# --------------------------------------------------------------------------- the converter


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_unstructure_hook(datetime, iso_ms)
    conv.register_structure_hook(
        datetime, lambda v, _: v if isinstance(v, datetime) else datetime.fromisoformat(
            str(v))
    )

    # Strict scalars: cattrs would happily turn "abc" into a str field from an int, or 3.7 into 3.
    def _int(v: Any, _: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (
            isinstance(v, float) and not v.is_integer()
        ):
            raise ValueError(f"expected an integer, got {v!r}")
        return int(v)

    def _float(v: Any, _: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if isinstance(v, str):
                try:
                    return float(v)
                except ValueError:
                    pass
            raise ValueError(f"expected a number, got {v!r}")
        return float(v)

    def _str(v: Any, _: Any) -> str:
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            raise ValueError(f"expected a string, got {type(v).__name__}")  # noqa: TRY004 - callers catch ValueError
        return str(v)

    def _bool(v: Any, _: Any) -> bool:
        if isinstance(v, bool):
            return v
        if v in ("true", "True", 1):
            return True
        if v in ("false", "False", 0):
            return False
        raise ValueError(f"expected true or false, got {v!r}")

    conv.register_structure_hook(int, _int)
    conv.register_structure_hook(float, _float)
    conv.register_structure_hook(str, _str)
    conv.register_structure_hook(bool, _bool)
    conv.register_structure_hook(Any, lambda v, _: v)

    # Omit None-valued optional fields when unstructuring, as the logging contract wants.
    def omit_none_factory(cls: type) -> Any:
        overrides: dict[str, Any] = {
            a.name: override(omit_if_default=a.default is None) for a in attrs.fields(cls)
        }
        return make_dict_unstructure_fn(cls, conv, **overrides)

    conv.register_unstructure_hook_factory(attrs.has, omit_none_factory)
    return conv


converter = _make_converter()


def unstructure(value: Any) -> Any:
    """An attrs instance (or a container of them) as JSON-ready data."""
    if isinstance(value, LogEvent):
        return value.to_dict()
    if isinstance(value, ExecutionTokenSummary):
        return value.to_dict()
    return converter.unstructure(value)


def structure(data: Any, cls: type[T], *, what: str | None = None) -> T:
    """Build ``cls`` from data; raises ValueError naming each bad path (``$.steps[0].name``)."""
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # noqa: BLE001 - cattrs raises groups and plain errors alike
        raise ValueError(describe_structure_error(exc, what or cls.__name__)) from None


def describe_structure_error(exc: BaseException, what: str) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        lines = cattrs.transform_error(exc, path="$")
        return f"invalid {what}: " + "; ".join(lines)
    return f"invalid {what}: {exc}"
