"""A run's events become one OpenTelemetry trace (runs in the sink's worker thread).

How events map to spans (the events' operation ids and parent links are the tree):

* the session is the root span, ``invoke_agent`` (task, agent, budget, outcome), created at
  the end of the run from its start time; with ``TRACEPARENT`` in the environment it is a child
  of the caller's span;
* an operation (a "Starting" event and its completion or failure event with ``duration_ms``)
  is a span from ``end - duration`` to ``end``, child of its parent operation's span; concurrent
  steps are sibling spans that overlap in time;
* an ``llm_call`` event is a ``chat`` span (model, provider, tokens, finish reason; prompt and
  completion only when content capture is on); a ``tools`` operation is an ``execute_tool``
  span (tool name, call id);
* a failed operation has status ERROR, ``error.type`` and ``sigil.error.code`` set to the error
  code, and an ``exception`` event;
* a one-off event (no duration, never completed) is a span event on its parent's span,
  warnings included; one that other events name as their parent (a tree-of-thoughts node)
  is a zero-length span so that its children stay linked.

Span ids are drawn when an operation's first event arrives, so a span can be created only
when its operation completes and still be the parent of spans exported before it.
"""

from __future__ import annotations

import calendar
import json
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as GA
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import SpanKind, Status, StatusCode

from .exporting import Pipeline, new_span_id, new_trace_id, warn
from .settings import OtelSettings

#: String metadata values that are identifiers, never contents: exported as ``sigil.*``.
#: Numbers and booleans are always exported; other strings only with content capture on.
ID_KEYS = {
    "step_name": "sigil.step", "strategy": "sigil.strategy", "step_strategy": "sigil.strategy",
    "contract_name": "sigil.contract", "intent": "sigil.intent", "handler": "sigil.handler",
    "source": "sigil.route.source", "plan_id": "sigil.plan.id", "tool_server": "sigil.tool.server",
    "purpose": "sigil.purpose", "node_id": "sigil.tot.node_id",
    "parent_node_id": "sigil.tot.parent_node_id", "method": "sigil.method",
    "threshold": "sigil.budget.threshold", "retrieval_method": "sigil.retrieval.method",
    "embedder": "sigil.embedder", "provider": "sigil.provider", "agent": "sigil.agent",
}
#: The core's phase operations (children of the session), by the phase they belong to.
PHASES = {"initialize": "initialize", "route_request": "route", "create_plan": "plan",
          "retrieve_context": "retrieve", "execute_plan": "execute",
          "validate_output": "validate", "extract_memories": "extract",
          "complete_execution": "complete"}
_SKIP_META = {"model", "input_tokens", "output_tokens", "cache_read_tokens",
              "cache_write_tokens", "max_tokens", "stop_reason", "request_model", "tool_name"}
_seconds: dict[str, int] = {}


def timestamp_ns(ts: str) -> int:
    """``2026-01-02T03:04:05.678Z`` as nanoseconds since the epoch (each second parsed once)."""
    head = ts[:19]
    sec = _seconds.get(head)
    if sec is None:
        if len(_seconds) > 4096:
            _seconds.clear()
        sec = _seconds[head] = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    return sec * 1_000_000_000 + int(ts[20:23]) * 1_000_000


class _Pending:
    """A duration-less event: an operation's start, or a one-off event (decided later)."""

    __slots__ = ("event", "notes")

    def __init__(self, event: Any) -> None:
        self.event = event
        self.notes: list[Any] = []  # further one-off events reusing the same operation id


class RunTrace:
    """One run's trace, fed with the run's event batches in order, finished with its record."""

    def __init__(self, settings: OtelSettings, pipeline: Pipeline, facts: dict[str, Any]) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.tracer = pipeline.tracer
        self.capture = settings.capture_content
        self.span_ids: dict[str, int] = {}
        self.parent_of: dict[str, str | None] = {}
        self.pending: dict[str, _Pending] = {}
        self.pending_children: dict[str, list[str]] = {}
        self.has_children: set[str] = set()
        self.ended: set[str] = set()
        self.root_ops: set[str] = set()
        self.root_notes: list[Any] = []
        self.top_level: dict[str, str] = {}  # operation id -> its phase
        self.completion: Any = None
        self.spans = 0
        self.facts = facts
        self._metrics(pipeline.meter)
        self._parent(facts.get("traceparent"), facts.get("tracestate"))

    # ----------------------------------------------------------------- set-up

    def _metrics(self, meter: Any) -> None:
        self.token_usage: Any = None
        self.duration: Any = None
        self.budget_used: Any = None
        if meter is None:
            return
        # The GenAI conventions' instruments (names, units, bucket advice) from the package.
        self.token_usage = gen_ai_metrics.create_gen_ai_client_token_usage(meter)
        self.duration = gen_ai_metrics.create_gen_ai_client_operation_duration(meter)
        self.budget_used = meter.create_histogram(
            "sigil.session.budget.used", unit="{token}",
            description="Tokens of the budget a session used")

    def _parent(self, traceparent: str | None, tracestate: str | None) -> None:
        """The caller's span from ``TRACEPARENT``/``TRACESTATE`` (W3C trace context), if any."""
        from opentelemetry.trace.propagation.tracecontext import (
            TraceContextTextMapPropagator,
        )

        carrier = {"traceparent": traceparent or "", "tracestate": tracestate or ""}
        parent_ctx = TraceContextTextMapPropagator().extract(carrier) if traceparent else None
        parent = trace.get_current_span(parent_ctx).get_span_context() if parent_ctx else None
        if parent is not None and parent.is_valid:
            self.parent_context: Any = parent_ctx
            self.trace_id = parent.trace_id
            self.flags = parent.trace_flags
        else:
            # An empty context, not None: None would nest the run under whatever span the
            # embedding application has active, in another trace than the run's.
            self.parent_context = Context()
            self.trace_id = new_trace_id()
            self.flags = trace.TraceFlags(trace.TraceFlags.SAMPLED)
        self.root_id = new_span_id()

    # ----------------------------------------------------------------- events

    def add(self, events: Sequence[Any]) -> None:
        for event in events:
            try:
                self._event(event)
            except Exception as exc:  # noqa: BLE001 - a bad event must not lose the trace
                warn(f"sink_otel skipped event {getattr(event, 'id', '?')}: "
                     f"{type(exc).__name__}: {exc}")

    def _event(self, e: Any) -> None:
        op = e.operation_id
        parent = e.parent_operation_id
        if parent is None or (parent not in self.parent_of and parent not in self.root_ops):
            # The session's own operation never emits events: whatever its children name as
            # parent without having announced it is the session.
            if parent is not None:
                self.root_ops.add(parent)
            parent = None
        elif parent in self.root_ops:
            parent = None
        if parent is None and op not in self.top_level:
            self.top_level[op] = PHASES.get(e.operation, e.operation)
        if e.duration_ms is None:
            known = self.pending.get(op)
            if known is not None:
                known.notes.append(e)
                return
            if op in self.ended or op in self.root_ops:
                self.root_notes.append(e)
                return
            self.parent_of[op] = parent
            self.span_ids[op] = new_span_id()
            self.pending[op] = _Pending(e)
            self.pending_children.setdefault(parent or "", []).append(op)
            if parent is not None:
                self.has_children.add(parent)
            return
        if e.component == "cli" and e.operation == "complete_execution" and parent is None:
            self.completion = e
            return
        start = self.pending.pop(op, None)
        if start is None:
            self.parent_of[op] = parent
            self.span_ids.setdefault(op, new_span_id())
            if parent is not None:
                self.has_children.add(parent)
        else:
            siblings = self.pending_children.get(parent or "")
            if siblings and op in siblings:
                siblings.remove(op)
        self._operation_span(e, start)

    # ----------------------------------------------------------------- spans

    def _context(self, parent: str | None) -> Any:
        span_id = self.root_id if parent is None else self.span_ids[parent]
        ctx = trace.SpanContext(self.trace_id, span_id, is_remote=False, trace_flags=self.flags)
        return trace.set_span_in_context(trace.NonRecordingSpan(ctx))

    def _start(self, op: str | None, name: str, start_ns: int, attributes: dict[str, Any],
               kind: SpanKind = SpanKind.INTERNAL) -> Any:
        if op is None:
            span_id, ctx = self.root_id, self.parent_context
        else:
            span_id, ctx = self.span_ids[op], self._context(self.parent_of.get(op))
        ids = self.pipeline.ids
        ids.preset(span_id, self.trace_id)
        try:
            span = self.tracer.start_span(name, context=ctx, kind=kind, attributes=attributes,
                                          start_time=start_ns)
        finally:
            ids.clear()
        self.spans += 1
        return span

    def _operation_span(self, e: Any, start: _Pending | None) -> None:
        op = e.operation_id
        end_ns = timestamp_ns(e.timestamp)
        start_ns = max(0, end_ns - int(e.duration_ms * 1_000_000))
        meta: dict[str, Any] = {}
        if start is not None and start.event.metadata:
            meta.update(start.event.metadata)
        if e.metadata:
            meta.update(e.metadata)
        attrs = self._common(e, meta)
        kind = SpanKind.INTERNAL
        if e.operation == "llm_call":
            name = self._chat(e, meta, attrs, start_ns, end_ns)
            kind = SpanKind.CLIENT
        elif e.component == "tools":
            tool = meta.get("tool_name") or e.operation
            name = f"execute_tool {tool}"
            attrs[GA.GEN_AI_OPERATION_NAME] = GA.GenAiOperationNameValues.EXECUTE_TOOL.value
            attrs[GA.GEN_AI_TOOL_NAME] = str(tool)
            attrs[GA.GEN_AI_TOOL_CALL_ID] = op
            attrs[GA.GEN_AI_TOOL_TYPE] = "function"
        else:
            name = e.operation
        if e.tokens_used is not None and e.operation != "llm_call":
            attrs["sigil.tokens.total"] = e.tokens_used.total_tokens
        span = self._start(op, name, start_ns, attrs, kind)
        if start is not None:
            for note in start.notes:
                self._note(span, note)
        self._children_as_notes(op, span)
        if e.error_info is not None:
            self._error(span, e.error_info, timestamp_ns(e.timestamp))
        span.end(end_time=end_ns)
        self.ended.add(op)

    def _common(self, e: Any, meta: dict[str, Any]) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "sigil.session.id": e.session_id,
            "sigil.component": e.component,
            "sigil.operation": e.operation,
            "sigil.operation_id": e.operation_id,
        }
        phase = self._phase(e.operation_id)
        if phase:
            attrs["sigil.phase"] = phase
        if e.parent_operation_id:
            attrs["sigil.parent_operation_id"] = e.parent_operation_id
        b = e.budget_snapshot
        if b is not None:
            attrs["sigil.budget.used"] = b.used
            attrs["sigil.budget.remaining"] = b.remaining
        for key, value in meta.items():
            if key in _SKIP_META or value is None:
                continue
            if isinstance(value, (bool, int, float)):
                attrs[ID_KEYS.get(key, f"sigil.{key}")] = value
            elif isinstance(value, str) and key in ID_KEYS:
                attrs[ID_KEYS[key]] = value
            elif self.capture:
                attrs[f"sigil.metadata.{key}"] = (value if isinstance(value, str)
                                                  else json.dumps(value, default=str))
        return attrs

    def _phase(self, op: str) -> str | None:
        seen = 0
        while op is not None and seen < 1000:
            phase = self.top_level.get(op)
            if phase is not None:
                return phase
            op = self.parent_of.get(op)  # type: ignore[assignment]
            seen += 1
        return None

    def _chat(self, e: Any, meta: dict[str, Any], attrs: dict[str, Any], start_ns: int,
              end_ns: int) -> str:
        provider = meta.get("provider") or str(meta.get("model") or "unknown").partition(":")[0]
        model = str(meta.get("model") or "")
        response_model = model.partition(":")[2] if model.startswith(f"{provider}:") else model
        request_model = meta.get("request_model") or response_model
        inp = int(meta.get("input_tokens") or 0)
        out = int(meta.get("output_tokens") or 0)
        cache_read = meta.get("cache_read_tokens")
        cache_write = meta.get("cache_write_tokens")
        attrs.update({
            GA.GEN_AI_OPERATION_NAME: GA.GenAiOperationNameValues.CHAT.value,
            GA.GEN_AI_PROVIDER_NAME: provider,
            GA.GEN_AI_REQUEST_MODEL: request_model,
            GA.GEN_AI_RESPONSE_MODEL: response_model,
            # The conventions count cached prompt tokens as input tokens too (Anthropic reports
            # them apart): input here is everything the prompt cost; the parts follow.
            GA.GEN_AI_USAGE_INPUT_TOKENS: inp + int(cache_read or 0) + int(cache_write or 0),
            GA.GEN_AI_USAGE_OUTPUT_TOKENS: out,
            "sigil.usage.total_tokens": (e.tokens_used.total_tokens if e.tokens_used else
                                         inp + out + int(cache_read or 0) + int(cache_write or 0)),
        })
        if cache_read is not None:
            attrs[GA.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = int(cache_read)
        if cache_write is not None:
            attrs[GA.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = int(cache_write)
        if meta.get("max_tokens") is not None:
            attrs[GA.GEN_AI_REQUEST_MAX_TOKENS] = int(meta["max_tokens"])
        if meta.get("stop_reason"):
            attrs[GA.GEN_AI_RESPONSE_FINISH_REASONS] = [str(meta["stop_reason"])]
        if self.capture and e.payload is not None:
            self._content(attrs, e.payload)
        metric_attrs = {GA.GEN_AI_OPERATION_NAME: "chat", GA.GEN_AI_PROVIDER_NAME: provider,
                        GA.GEN_AI_REQUEST_MODEL: request_model}
        if response_model:
            metric_attrs[GA.GEN_AI_RESPONSE_MODEL] = response_model
        if e.error_info is not None:
            # A failed call (the conventions: its span has error status and error.type, its
            # duration is recorded with error.type; no token usage unless the provider billed
            # part of it).
            attrs.pop(GA.GEN_AI_RESPONSE_MODEL, None)
            if meta.get("input_tokens") is None:
                for key in (GA.GEN_AI_USAGE_INPUT_TOKENS, GA.GEN_AI_USAGE_OUTPUT_TOKENS,
                            "sigil.usage.total_tokens"):
                    attrs.pop(key, None)
            if self.duration is not None:
                self.duration.record((end_ns - start_ns) / 1e9,
                                     {**metric_attrs, ERROR_TYPE: e.error_info.error_code})
            return f"chat {request_model}".rstrip()
        if self.token_usage is not None:
            self.token_usage.record(attrs[GA.GEN_AI_USAGE_INPUT_TOKENS],
                                    {**metric_attrs, GA.GEN_AI_TOKEN_TYPE: "input"})
            self.token_usage.record(out, {**metric_attrs, GA.GEN_AI_TOKEN_TYPE: "output"})
            self.duration.record((end_ns - start_ns) / 1e9, metric_attrs)
        return f"chat {request_model}"

    @staticmethod
    def _content(attrs: dict[str, Any], payload: Any) -> None:
        """The conventions' structured message attributes (JSON), only with capture on."""
        try:
            request, response = payload
        except (TypeError, ValueError):
            return
        if getattr(request, "system", None):
            attrs[GA.GEN_AI_SYSTEM_INSTRUCTIONS] = json.dumps(
                [{"type": "text", "content": request.system}], ensure_ascii=False)
        messages = []
        for m in getattr(request, "messages", None) or []:
            content = m.get("content")
            if isinstance(content, str):
                parts = [{"type": "text", "content": content}]
            else:
                parts = [{"type": "text", "content": str(b.get("text", ""))} for b in content or []
                         if isinstance(b, dict)]
            messages.append({"role": m.get("role", "user"), "parts": parts})
        attrs[GA.GEN_AI_INPUT_MESSAGES] = json.dumps(messages, ensure_ascii=False, default=str)
        out = {"role": "assistant",
               "parts": [{"type": "text", "content": getattr(response, "text", "")}]}
        if getattr(response, "stop_reason", None):
            out["finish_reason"] = response.stop_reason
        attrs[GA.GEN_AI_OUTPUT_MESSAGES] = json.dumps([out], ensure_ascii=False, default=str)

    def _error(self, span: Any, info: Any, at_ns: int) -> None:
        span.set_status(Status(StatusCode.ERROR, f"{info.error_code}: {info.error_message}"))
        span.set_attribute(ERROR_TYPE, info.error_code)
        span.set_attribute("sigil.error.code", info.error_code)
        span.set_attribute("sigil.error.recoverable", bool(info.recoverable))
        event = {"exception.type": info.error_type, "exception.message": info.error_message,
                 "sigil.error.code": info.error_code}
        if info.stack_trace:
            event["exception.stacktrace"] = info.stack_trace
        span.add_event("exception", event, timestamp=at_ns)

    # ----------------------------------------------------------------- one-off events

    def _children_as_notes(self, op: str, span: Any) -> None:
        """The operation ended: its still-pending children were one-off events."""
        for child in self.pending_children.pop(op, []):
            pending = self.pending.pop(child, None)
            if pending is None:
                continue
            if child in self.has_children:
                self._point_span(child, pending)
            else:
                self._note(span, pending.event)
                for note in pending.notes:
                    self._note(span, note)

    def _point_span(self, op: str, pending: _Pending) -> None:
        e = pending.event
        at = timestamp_ns(e.timestamp)
        attrs = self._common(e, dict(e.metadata or {}))
        attrs["sigil.level"] = e.level
        span = self._start(op, e.operation, at, attrs)
        for note in pending.notes:
            self._note(span, note)
        self._children_as_notes(op, span)
        if e.error_info is not None:
            self._error(span, e.error_info, at)
        span.end(end_time=at)
        self.ended.add(op)

    def _note(self, span: Any, e: Any) -> None:
        attrs = self._common(e, dict(e.metadata or {}))
        attrs["sigil.level"] = e.level
        attrs["sigil.message"] = e.message
        if e.error_info is not None:
            attrs["sigil.error.code"] = e.error_info.error_code
            attrs[ERROR_TYPE] = e.error_info.error_code
        span.add_event(e.operation, attrs, timestamp=timestamp_ns(e.timestamp))

    # ----------------------------------------------------------------- the end

    def finish(self, record: dict[str, Any]) -> None:
        """The run is over: the session span, the one-off events left, the budget metric."""
        root = self._root_span(record)
        self._children_as_notes("", root)
        for note in self.root_notes:
            self._note(root, note)
        # Starts without an end (a run cut short): spans that end with the session.
        end_ns = time.time_ns()
        for op, pending in list(self.pending.items()):
            self.pending.pop(op, None)
            self._point_span(op, pending)
        root.end(end_time=end_ns)
        if self.budget_used is not None:
            budget = (record.get("token_summary") or {}).get("budget") or {}
            self.budget_used.record(int(budget.get("used", 0)),
                                    {"sigil.outcome": self._outcome(record)})

    def _outcome(self, record: dict[str, Any]) -> str:
        summary = record.get("summary") or {}
        if summary.get("success"):
            return "success"
        code = summary.get("exit_code")
        return {3: "budget_exhausted", 2: "bad_input"}.get(code if isinstance(code, int) else -1,
                                                          "failed")

    def _root_span(self, record: dict[str, Any]) -> Any:
        facts = self.facts
        tokens = record.get("token_summary") or {}
        budget = tokens.get("budget") or {}
        summary = record.get("summary") or {}
        agent = facts.get("agent") or "sigil"
        attrs: dict[str, Any] = {
            GA.GEN_AI_OPERATION_NAME: GA.GenAiOperationNameValues.INVOKE_AGENT.value,
            GA.GEN_AI_AGENT_NAME: agent,
            GA.GEN_AI_PROVIDER_NAME: facts["provider"],
            GA.GEN_AI_CONVERSATION_ID: facts["session_id"],
            "sigil.session.id": facts["session_id"],
            "sigil.task.length": len(facts["task"]),
            "sigil.budget.total": int(facts["budget"]),
            "sigil.budget.used": int(budget.get("used", 0)),
            "sigil.budget.remaining": int(budget.get("remaining", 0)),
            "sigil.tokens.total": int(tokens.get("total_tokens", 0)),
            "sigil.tokens.input": int(tokens.get("input_tokens", 0)),
            "sigil.tokens.output": int(tokens.get("output_tokens", 0)),
            "sigil.llm_calls": int(tokens.get("llm_calls", 0)),
            "sigil.outcome": self._outcome(record),
            "sigil.exit_code": int(summary.get("exit_code") or 0),
            "sigil.events": int(summary.get("total_events") or 0),
        }
        if self.capture:
            attrs["sigil.task"] = facts["task"]
        result = record.get("result") or {}
        if result.get("intent"):
            attrs["sigil.intent"] = result["intent"]
        start_ns = int(facts["started_at"].timestamp() * 1e9)
        root = self._start(None, f"invoke_agent {agent}", start_ns, attrs)
        if self.completion is not None:
            self._note(root, self.completion)
        error = result.get("error")
        if not summary.get("success", False):
            if isinstance(error, dict) and error.get("error_code"):
                from sigil_core import ErrorInfo

                info = ErrorInfo(error_type=str(error.get("error_type") or "SigilError"),
                                 error_message=str(error.get("error_message") or ""),
                                 error_code=str(error["error_code"]),
                                 recoverable=bool(error.get("recoverable")))
                self._error(root, info, time.time_ns())
            else:
                root.set_status(Status(StatusCode.ERROR, "the run failed"))
        return root
