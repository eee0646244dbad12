"""A run: the object every phase hook receives.

It owns the session (ids, config, budget), the LLM gateway (``run.llm``), the registries of
plugin objects, and event emission. Operations nest through a context variable, so events carry
the right ``parent_operation_id`` even when steps run concurrently in their own asyncio tasks.
"""

from __future__ import annotations

import contextvars
import time
import weakref
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from .budget import BudgetTracker, Reservation
from .errors import BudgetExhaustedError, RunStopped, SigilError, ToolError
from .events import EventBus, new_event_id
from .llm import Gateway
from .model import (
    Agent,
    ErrorInfo,
    ExecutionContext,
    ExecutionTokenSummary,
    LogEvent,
    MemoryContext,
    OperationTokenRecord,
    PlanStep,
    TokenUsage,
    now_iso_ms,
)

if TYPE_CHECKING:
    from .config import Config
    from .plugins import PluginHost
    from .protocols import Provider

_current_op: contextvars.ContextVar[Operation | None] = contextvars.ContextVar(
    "sigil_operation", default=None)
_current_phase: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sigil_phase", default=None)
_current_run: contextvars.ContextVar[Run | None] = contextvars.ContextVar(
    "sigil_run", default=None)


def current_run() -> Run | None:
    """The run whose code is executing (in any task it started), e.g. for a tool's call()."""
    return _current_run.get()


def current_operation() -> Operation | None:
    """The innermost operation of the executing code, in any run (``op.run`` is its run);
    None once that run is over and gone (code a run started that outlives it, e.g. an SDK's
    retry on a thread after the run was stopped, has no run to report to)."""
    op = _current_op.get()
    return op if op is not None and op._run() is not None else None


class Operation:
    """One unit of work with its own events: started, completed or failed."""

    __slots__ = (
        "_run",
        "_t0",
        "always_report_tokens",
        "calls",
        "component",
        "metadata",
        "name",
        "operation_id",
        "parent_id",
        "phase",
        "tokens",
    )

    def __init__(self, run: Run, component: str, name: str, parent_id: str | None,
                 phase: str | None, metadata: dict[str, Any] | None) -> None:
        # A weak reference: the run holds its operations (its root, the current one in the
        # context), and a reference back would put every run in a reference cycle, freed only
        # by the cyclic collector's full passes instead of as the run ends (see Run.__init__).
        self._run = weakref.ref(run)
        self.operation_id = f"op_{new_event_id()[4:]}"
        self.component = component
        self.name = name
        self.parent_id = parent_id
        self.phase = phase
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.tokens = TokenUsage.zero()
        self.calls = 0
        #: Put tokens_used on the completion event even when no call was made (then 0).
        self.always_report_tokens = False
        self._t0 = time.perf_counter()

    @property
    def run(self) -> Run:
        """The run this operation belongs to."""
        run = self._run()
        if run is None:  # only after the run itself is gone
            raise RuntimeError(f"operation {self.operation_id}: its run no longer exists")
        return run

    def set_metadata(self, **metadata: Any) -> None:
        self.metadata.update(metadata)

    def add_tokens(self, usage: TokenUsage) -> None:
        self.tokens = self.tokens + usage
        self.calls += 1

    def event(self, level: str, message: str, metadata: dict[str, Any] | None = None,
              **fields: Any) -> LogEvent:
        return self.run._emit(level, self.component, self.name, message, self.operation_id,
                              self.parent_id, metadata=metadata, **fields)

    @property
    def reported_tokens(self) -> TokenUsage | None:
        return self.tokens if self.calls or self.always_report_tokens else None

    @property
    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self._t0) * 1000.0, 3)


class _OperationScope:
    """What ``run.operation(...)`` returns: an async context manager written out rather than
    made by ``contextlib.asynccontextmanager`` (an async generator and its wrapper per use:
    ~25 operations and phases a run, on the hot path of every run)."""

    __slots__ = ("_op", "_phase_token", "_token", "component", "metadata", "name", "phase",
                 "run", "start_level")

    def __init__(self, run: Run, component: str, name: str, metadata: dict[str, Any] | None,
                 phase: str | None, start_level: str) -> None:
        self.run = run
        self.component = component
        self.name = name
        self.metadata = metadata
        self.phase = phase
        self.start_level = start_level

    async def __aenter__(self) -> Operation:
        run = self.run
        run.check_stop()
        parent = run.current_operation()
        phase = self.phase if self.phase is not None else _current_phase.get()
        op = Operation(run, self.component, self.name,
                       parent.operation_id if parent else run._root.operation_id, phase,
                       self.metadata)
        self._token = _current_op.set(op)
        self._phase_token = _current_phase.set(phase)
        op.event(self.start_level, f"Starting {self.name}", dict(op.metadata) or None)
        self._op = op
        return op

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: object) -> None:
        op, name = self._op, self.name
        try:
            if exc is None:
                op.event("info", f"Completed {name}", dict(op.metadata) or None,
                         duration_ms=op.elapsed_ms, tokens_used=op.reported_tokens)
            else:
                # A stop or a cancellation is not a bug: no stack trace for them.
                info = ErrorInfo.from_exception(
                    exc, with_trace=isinstance(exc, Exception) and not isinstance(exc, SigilError))
                recoverable = isinstance(exc, SigilError) and exc.recoverable
                level = "warning" if recoverable or not isinstance(exc, Exception) else "error"
                if isinstance(exc, BudgetExhaustedError):
                    level = "error"
                verb = ("Cancelled" if type(exc).__name__ == "CancelledError"
                        else "Stopped" if isinstance(exc, RunStopped) else "Failed")
                op.event(level, f"{verb} {name}", dict(op.metadata) or None,
                         duration_ms=op.elapsed_ms, tokens_used=op.reported_tokens,
                         error_info=info)
        finally:
            _current_op.reset(self._token)
            _current_phase.reset(self._phase_token)


class _PhaseScope:
    """What ``run.phase(name)`` returns (see :class:`_OperationScope`)."""

    __slots__ = ("_token", "name", "run")

    def __init__(self, run: Run, name: str) -> None:
        self.run = run
        self.name = name

    async def __aenter__(self) -> None:
        self.run.check_stop()
        self._token = _current_phase.set(self.name)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: object) -> None:
        _current_phase.reset(self._token)


@attrs.define
class StepContext:
    """Everything a strategy needs to reason through one step."""

    task: str
    step: PlanStep
    agent: Agent | None = None
    memory: MemoryContext | None = None
    dependency_outputs: dict[str, Any] = attrs.Factory(dict)
    feedback: str | None = None
    output_schema: dict[str, Any] | None = None
    attempt: int = 1
    tools: list[str] = attrs.Factory(list)

    def system(self) -> str:
        """The stable prefix of every call in this run: role, agent definition, tools, task.

        It is the same for every step of a run (and for repeated runs of the same task), so
        providers that cache prompts (Anthropic) read it from the cache after the first call.
        """
        from .prompts import system_prompt

        parts = [system_prompt("reasoning")]
        if self.agent is not None:
            parts.append(f"You act as the agent {self.agent.name!r}: {self.agent.description}")
            if self.agent.instructions:
                parts.append(f"Agent instructions:\n{self.agent.instructions}")
        if self.tools:
            parts.append("Tools available to the run: " + ", ".join(self.tools))
        parts.append(f"Overall task: {self.task}")
        return "\n\n".join(parts)

    def prompt(self, extra: str = "") -> str:
        """The step prompt: the step, its inputs, earlier results, memories and feedback.
        Send it with ``system=context.system()``, which carries the task and the agent."""
        parts = []
        parts.append(f"Current step: {self.step.name} - {self.step.description}")
        if self.step.inputs:
            parts.append("Inputs needed: " + ", ".join(self.step.inputs))
        if self.step.outputs:
            parts.append("Outputs to produce: " + ", ".join(self.step.outputs))
        if self.dependency_outputs:
            parts.append("Results of earlier steps:")
            for name, out in self.dependency_outputs.items():
                parts.append(f"- {name}: {_short(out)}")
        if self.memory and self.memory.items:
            parts.append("Relevant memories:")
            parts.extend(f"- ({m.memory_type}) {m.content}" for m in self.memory.items)
        if self.feedback:
            parts.append(f"Feedback on the previous attempt (fix these):\n{self.feedback}")
        if self.output_schema:
            parts.append("Answer with one JSON object matching the required schema.")
        if extra:
            parts.append(extra)
        return "\n\n".join(parts)

    def hints(self) -> dict[str, Any]:
        """Structured facts for the offline provider (it cannot read prose reliably)."""
        return {
            "task": self.task,
            "step": self.step.name,
            "step_description": self.step.description,
            "dependency_outputs": self.dependency_outputs,
            "memories": [m.content for m in (self.memory.items if self.memory else [])],
            "feedback": self.feedback,
            "agent": self.agent.name if self.agent else None,
        }


def _short(value: Any, limit: int = 1200) -> str:
    text = value if isinstance(value, str) else __import__("json").dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Run:
    """One orchestration run. Created by the orchestrator; handed to every phase hook."""

    def __init__(
        self,
        ctx: ExecutionContext,
        config: Config,
        host: PluginHost,
        provider: Provider,
        *,
        bus: EventBus | None = None,
        budget_pool: Any = None,
    ) -> None:
        self.ctx = ctx
        self.config = config
        self.host = host
        b = config.budget
        self.bus = bus or EventBus(
            buffer_size=config.logging.buffer_size,
            flush_interval_ms=config.logging.flush_interval_ms,
        )
        # The run's parts refer back to it weakly (the alert callback here, the gateway's and
        # each operation's ``run``): with strong references every run was a reference cycle,
        # ~350 objects with its events, that only the cyclic collector's full passes freed; in
        # a process running many runs (sigil batch, the worker) they piled up between passes
        # and each pass cost 0.1-0.2 s per 100 runs. Now a finished run is freed at once.
        ref = weakref.ref(self)

        def on_alert(level: str, snapshot: Any) -> None:
            run = ref()
            if run is not None:
                run._budget_alert(level, snapshot)

        self.budget = BudgetTracker(
            ctx.budget, b.allocations, b.warning_threshold, b.critical_threshold,
            on_alert=on_alert, pool=budget_pool,
        )
        self.llm = Gateway(self, provider)
        self.records: dict[str, OperationTokenRecord] = {}
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self.state: dict[str, Any] = {}
        self.started_at: datetime = ctx.started_at
        self._t0 = time.perf_counter()
        self._root = Operation(self, "orchestrator", "orchestrate", None, None, None)
        #: Why the run is stopping (``interrupted``, ``budget``, ``failed``), once it is: from
        #: then on no phase, operation, LLM call or tool call starts (:class:`RunStopped`).
        self.stop_reason: str | None = None
        #: The signal that stopped the run (SIGINT, SIGTERM), if one did.
        self.stop_signal: int | None = None

    def activate(self) -> contextvars.Token[Run | None]:
        """Make this the current run for the calling task and every task it starts; hand the
        token to :meth:`deactivate` when the run is over."""
        return _current_run.set(self)

    @staticmethod
    def deactivate(token: contextvars.Token[Run | None]) -> None:
        """Make the run current before :meth:`activate` (the one that gave ``token``) current
        again."""
        _current_run.reset(token)

    # ----------------------------------------------------------------- basics

    @property
    def session_id(self) -> str:
        return self.ctx.session_id

    def registry(self, kind: str) -> dict[str, Any]:
        return self.host.registry(kind)

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Register cleanup run at the end of the run (MCP sessions, servers...)."""
        self._closers.append(closer)

    async def aclose(self) -> None:
        for closer in reversed(self._closers):
            try:
                await closer()
            except Exception as exc:  # noqa: BLE001 - cleanup must not mask the result
                self.event("warning", "system", "cleanup", f"Cleanup failed: {exc}")
        self._closers.clear()

    @property
    def elapsed_seconds(self) -> float:
        return time.perf_counter() - self._t0

    # ----------------------------------------------------------------- stopping

    def stop(self, reason: str, *, signum: int | None = None) -> None:
        """Start no new work from now on; calls already sent may finish (the first reason wins,
        a signal always counts)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if signum is not None and self.stop_signal is None:
            self.stop_signal = signum
            self.stop_reason = "interrupted"

    def check_stop(self) -> None:
        """Raise :class:`RunStopped` when the run is stopping (called before any new work)."""
        if self.stop_reason is not None:
            raise RunStopped(self.stop_reason)

    # ----------------------------------------------------------------- events

    def current_operation(self) -> Operation | None:
        op = _current_op.get()
        return op if op is not None and op.run is self else None

    def _emit(self, level: str, component: str, operation: str, message: str,
              operation_id: str | None, parent_id: str | None, *,
              metadata: dict[str, Any] | None = None, duration_ms: float | None = None,
              tokens_used: TokenUsage | None = None,
              error_info: ErrorInfo | None = None, payload: Any = None) -> LogEvent:
        # The hot path of every event: positional construction, one id for event and operation.
        event_id = new_event_id()
        ctx = self.ctx
        event = LogEvent(
            event_id, now_iso_ms(), level, component, operation, message, ctx.session_id,
            ctx.correlation_id, operation_id or "op" + event_id[3:], parent_id, duration_ms,
            tokens_used, metadata or None, error_info, self.budget.snapshot(), payload,
            ctx.attempt if ctx.attempt > 1 else None,
        )
        self.bus.emit(event)
        return event

    def event(self, level: str, component: str, operation: str, message: str,
              metadata: dict[str, Any] | None = None, error_info: ErrorInfo | None = None,
              *, operation_id: str | None = None, parent_operation_id: str | None = None,
              **fields: Any) -> LogEvent:
        """A standalone event inside the current operation.

        It gets its own operation id (or ``operation_id``) and the current operation as parent
        (or ``parent_operation_id``), so a plugin can link events into its own tree, e.g. the
        branches of a tree-of-thoughts search.
        """
        if parent_operation_id is None:
            op = _current_op.get()
            parent_operation_id = (op.operation_id if op is not None and op.run is self
                                   else self._root.operation_id)
        return self._emit(level, component, operation, message, operation_id,
                          parent_operation_id, metadata=metadata, error_info=error_info,
                          **fields)

    def plugin_problem(self, problem: Any) -> None:
        """Record a plugin failure the host survived (:class:`~sigil_core.plugins.PluginProblem`)."""
        self.event("warning", "system", "plugins", problem.message,
                   metadata={"plugin": problem.plugin, "hook": problem.hook},
                   error_info=ErrorInfo("PluginError", problem.message, "SYSTEM_001",
                                        recoverable=True))

    def annotate(self, **metadata: Any) -> None:
        """Add metadata to the current operation's completion event."""
        op = self.current_operation()
        if op is not None:
            op.metadata.update(metadata)

    def operation(self, component: str, operation: str,
                  metadata: dict[str, Any] | None = None, *, phase: str | None = None,
                  start_level: str = "info") -> _OperationScope:
        """Start/complete/fail events around a block (``async with``); nested operations link
        to this one."""
        return _OperationScope(self, component, operation, metadata, phase, start_level)

    def phase(self, name: str) -> _PhaseScope:
        """The phase (``async with``) the operations and LLM calls of a block are booked to."""
        return _PhaseScope(self, name)

    def _budget_alert(self, level: str, snapshot: Any) -> None:
        op = self.current_operation()
        self._emit(
            level, "orchestrator", "budget",
            f"Token budget {snapshot.percentage_used:.1f}% used "
            f"({snapshot.used:,}/{snapshot.total_budget:,})",
            f"op_{new_event_id()[4:]}", op.operation_id if op else self._root.operation_id,
            metadata={"threshold": level,
                      "last_component": op.component if op else None,
                      "last_operation": op.name if op else None},
        )

    # ----------------------------------------------------------------- tokens

    def book_usage(self, reservation: Reservation, usage: TokenUsage) -> None:
        """Charge a finished call to the budget, its component and the current operation."""
        op = self.current_operation() or self._root
        if op is not None:
            op.add_tokens(usage)
            rec = self.records.get(op.operation_id)
            if rec is None:
                rec = self.records[op.operation_id] = OperationTokenRecord(
                    op.operation_id, op.component, op.name, op.phase, TokenUsage.zero())
            rec.tokens = rec.tokens + usage
            rec.calls += 1
        # Charge the component the budget reservation was made for (the gateway's component).
        self.budget.commit(reservation, usage)

    def seed_tokens(self, records: list[OperationTokenRecord], used: int) -> None:
        """Start from the tokens earlier attempts of a resumed session used: they count
        against the budget and appear in the token summary."""
        for rec in records:
            self.records[rec.operation_id] = rec
            self.budget.by_component[rec.component] = (
                self.budget.by_component.get(rec.component, 0) + rec.tokens.total_tokens)
        self.budget.used = used
        self.budget._snapshot = None

    def summary(self) -> ExecutionTokenSummary:
        records = list(self.records.values())
        total = TokenUsage.zero()
        by_phase: dict[str, int] = {}
        for rec in records:
            total = total + rec.tokens
            key = rec.phase or "other"
            by_phase[key] = by_phase.get(key, 0) + rec.tokens.total_tokens
        snap = self.budget.snapshot()
        return ExecutionTokenSummary(
            session_id=self.session_id,
            total_tokens=total.total_tokens,
            input_tokens=total.input_tokens,
            output_tokens=total.output_tokens,
            budget_total=snap.total_budget,
            budget_used=snap.used,
            budget_remaining=snap.remaining,
            percentage_used=snap.percentage_used,
            by_component=dict(self.budget.by_component),
            by_phase=by_phase,
            by_operation=records,
            llm_calls=sum(r.calls for r in records),
            cache_read_tokens=total.cache_read_tokens or 0,
            cache_write_tokens=total.cache_write_tokens or 0,
            estimated_tokens=total.estimated_tokens,
        )

    # ----------------------------------------------------------------- tools

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        """Call a registered tool: arguments validated against its schema, one `tools` event.

        Errors are recoverable ToolErrors: TOOL_001 unknown tool, TOOL_005 invalid arguments,
        and whatever the tool raises (TOOL_002 failure, TOOL_003 timeout, TOOL_004 connection).
        """
        tools = self.registry("tools")
        tool = tools.get(name)
        if tool is None:
            raise ToolError(f"tool {name!r} not found; known tools: {', '.join(sorted(tools)) or 'none'}",
                            code="TOOL_001")
        arguments = dict(arguments or {})
        server = getattr(tool, "server", None) or "builtin"
        tool_name = getattr(tool, "tool_name", None) or name
        async with self.operation("tools", name, {"tool_name": tool_name,
                                                  "tool_server": server,
                                                  "arguments": arguments}) as op:
            schema = getattr(tool, "input_schema", None)
            if schema:
                problem = _argument_problem(schema, arguments)
                if problem:
                    raise ToolError(f"invalid arguments for tool {name!r}: {problem}",
                                    code="TOOL_005")
            earlier = self._earlier_tool_call(name, tool, arguments)
            if earlier is not None:
                op.set_metadata(reused=True, result=earlier.result)
                return earlier.result
            try:
                result = await tool.call(arguments)
            except ToolError:
                raise
            except Exception as exc:  # noqa: BLE001 - any tool failure is TOOL_002
                raise ToolError(f"tool {name!r} failed: {type(exc).__name__}: {exc}",
                                code="TOOL_002") from None
            count = len(result) if isinstance(result, (list, tuple)) else 1
            # The result goes in the journal: a resumed session reuses it instead of calling
            # the tool (and repeating its side effects) again.
            op.set_metadata(results_count=count, result=_jsonable(result))
            recorder = self.state.get("cassette")
            if recorder is not None:
                recorder.record_tool(name, arguments, result)
            return result

    def _earlier_tool_call(self, name: str, tool: Any, arguments: dict[str, Any]) -> Any:
        """A call an earlier attempt of this session made: its result if it finished (or a
        replayed session has it), else None; one that started and never finished is re-run only
        for a tool declared idempotent or read-only, and refused otherwise."""
        calls = self.state.get("earlier_tool_calls")
        if not calls:
            return None
        from .resume import tool_key

        call = calls.get(tool_key(name, arguments))
        if call is None:
            return None
        if call.finished:
            return call
        if tool_is_idempotent(tool):
            self.event("warning", "tools", name,
                       f"Tool {name!r} was called by an earlier attempt without a recorded "
                       "result; it is idempotent, so it runs again",
                       metadata={"tool": name, "rerun": True})
            return None
        raise ToolError(
            f"tool {name!r} was called by an earlier attempt of this session and its result "
            "is unknown; it is not declared idempotent, so it is not run again blindly "
            "(it may have had side effects)", code="TOOL_002", recoverable=False)


def tool_is_idempotent(tool: Any) -> bool:
    """Whether calling the tool twice is safe: ``idempotent = True`` on the tool, or the MCP
    annotations ``idempotentHint`` / ``readOnlyHint``."""
    if getattr(tool, "idempotent", False):
        return True
    notes = getattr(tool, "annotations", None) or {}
    if not isinstance(notes, dict):
        notes = {k: getattr(notes, k, None) for k in ("idempotentHint", "readOnlyHint")}
    return bool(notes.get("idempotentHint") or notes.get("readOnlyHint"))


def _jsonable(value: Any) -> Any:
    import json

    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)


_TOOL_VALIDATORS: dict[str, Any] = {}


def _argument_problem(schema: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    """Why the arguments do not match the tool's schema (None when they do).

    Validators are compiled once per schema (checking a schema costs far more than using it);
    a tool that declares an invalid schema is reported, not raised.
    """
    import json

    import jsonschema

    key = json.dumps(schema, sort_keys=True, default=str)
    validator = _TOOL_VALIDATORS.get(key)
    if validator is None:
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            return f"the tool declares an invalid input schema: {exc.message}"
        validator = _TOOL_VALIDATORS[key] = cls(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    return None if error is None else error.message
