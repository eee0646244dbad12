"""Resuming a session from its journal (``sigil orchestrate --resume SESSION``).

The session's ``.jsonl`` is the checkpoint: the route, the plan, the retrieved memories and
every finished step's result are in the completion events the run wrote as it went, and so are
the tokens every attempt used. :func:`load_checkpoint` reads them back; the orchestrator then
runs only what is left (unfinished steps, validation, extraction), books new tokens on top of
the old ones, and appends the new attempt's events, each with its ``attempt`` number, to the
same journal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from .errors import UsageError
from .model import (
    MemoryContext,
    OperationTokenRecord,
    Plan,
    RouteDecision,
    StepResult,
    TokenUsage,
    structure,
)
from .sessions import journal_info, read_journal

#: The orchestrator's top-level operations and the phase each one is (to rebuild by_phase).
_PHASE_OF = {"route_request": "route", "create_plan": "plan", "retrieve_context": "retrieve",
             "execute_plan": "execute", "validate_output": "validate", "retry_step": "validate",
             "extract_memories": "extract"}
_END_VERBS = ("Completed ", "Failed ", "Stopped ", "Cancelled ")


@attrs.define
class ToolCall:
    """A tool call seen in the journal: its result if it finished."""

    name: str
    arguments: dict[str, Any]
    finished: bool = False
    result: Any = None


@attrs.define
class Checkpoint:
    """What a session's journal says was done, for the next attempt to build on."""

    session_id: str
    task: str
    agent: str | None
    budget: int
    attempt: int
    previous_status: str
    route: RouteDecision | None = None
    plan: Plan | None = None
    memory: MemoryContext | None = None
    memory_done: bool = False
    steps: dict[str, StepResult] = attrs.Factory(dict)
    records: list[OperationTokenRecord] = attrs.Factory(list)
    used: int = 0
    tool_calls: dict[str, ToolCall] = attrs.Factory(dict)
    #: How many events the earlier attempts wrote.
    events: int = 0

    def reused(self) -> dict[str, Any]:
        """For the ``resume`` event: what this attempt takes from the earlier ones."""
        return {"route": self.route is not None, "plan": self.plan is not None,
                "memory": self.memory_done, "steps": sorted(self.steps),
                "tool_results": sum(1 for c in self.tool_calls.values() if c.finished)}


def tool_key(name: str, arguments: dict[str, Any]) -> str:
    return name + " " + json.dumps(arguments, sort_keys=True, default=str, ensure_ascii=False)


def load_checkpoint(folder: Path, session_id: str) -> Checkpoint:
    """Read a session's journal back, or say clearly why it cannot be resumed (UsageError)."""
    from .sessions import _ID

    if not _ID.match(session_id):
        raise UsageError(f"invalid session id {session_id!r}")
    journal = folder / f"{session_id}.jsonl"
    if not journal.is_file():
        raise UsageError(f"cannot resume {session_id!r}: no journal {journal} (see `sigil "
                         "sessions list`)")
    status = "incomplete"
    record_path = folder / f"{session_id}.json"
    if record_path.exists():
        try:
            status = json.loads(record_path.read_text(encoding="utf-8")).get("status") or "failed"
        except (OSError, ValueError, AttributeError):
            status = "unreadable"
    if status == "ok":
        raise UsageError(f"cannot resume {session_id!r}: it finished successfully; there is "
                         "nothing left to run (start a new session instead)")
    try:
        events = read_journal(journal)
    except OSError as exc:
        raise UsageError(f"cannot resume {session_id!r}: cannot read {journal}: {exc}") from None
    inits = [e for e in events if e.get("operation") == "initialize"
             and "task" in (e.get("metadata") or {})]
    if not inits:
        raise UsageError(f"cannot resume {session_id!r}: its journal {journal} does not say "
                         "what the task was (written by an older Sigil, or not a session)")
    meta = inits[0]["metadata"]
    if status == "incomplete":
        info = journal_info(journal)
        if info["status"] == "running":
            raise UsageError(f"cannot resume {session_id!r}: it is still running (pid "
                             f"{info['pid']} on {info['host']}); stop it first (Ctrl-C)")
    cp = Checkpoint(session_id, meta["task"], meta.get("agent"), int(meta.get("budget") or 0),
                    max(int(e.get("attempt") or 1) for e in events) + 1, status)
    cp.events = len(events)
    try:
        _read_phases(cp, events)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"cannot resume {session_id!r}: its journal cannot be read by this "
                         f"version of Sigil or its plugins ({type(exc).__name__}: {exc}); "
                         "start a new session") from None
    _read_tokens(cp, events)
    return cp


def _read_phases(cp: Checkpoint, events: list[dict[str, Any]]) -> None:
    for e in events:
        meta = e.get("metadata") or {}
        op, message = e.get("operation"), e.get("message") or ""
        if op == "route_request" and message.startswith("Completed "):
            cp.route = RouteDecision(meta["intent"], meta["complexity"], meta["handler"],
                                     meta["strategy"], meta.get("rationale") or "",
                                     meta.get("source") or "journal")
        elif op == "create_plan" and message.startswith("Completed ") and "plan" in meta:
            cp.plan = structure(meta["plan"], Plan, what="the journal's plan")
            cp.steps.clear()  # results of steps of an older plan do not carry over
        elif op == "retrieve_context" and (message.startswith("Completed ") or meta.get("skipped")):
            cp.memory_done = True
            cp.memory = (structure(meta["memory"], MemoryContext, what="the journal's memories")
                         if meta.get("memory") else None)
        elif op == "execute_step" and "result" in meta and cp.plan is not None:
            result = structure(meta["result"], StepResult, what="a step result in the journal")
            if any(s.name == result.step_name for s in cp.plan.steps):
                cp.steps[result.step_name] = result
        elif e.get("component") == "tools" and "arguments" in meta:
            key = tool_key(str(op), meta["arguments"])
            call = cp.tool_calls.setdefault(key, ToolCall(str(op), meta["arguments"]))
            if message.startswith("Completed ") and "result" in meta:
                call.finished, call.result = True, meta["result"]
    if cp.plan is None:
        cp.steps.clear()


def _read_tokens(cp: Checkpoint, events: list[dict[str, Any]]) -> None:
    """Token records of the earlier attempts, by operation, from their end events; what the
    budget says was used and no end event accounts for (an operation cut by SIGKILL) is one
    more record, so the totals agree."""
    names: dict[str, tuple[str, str, str | None]] = {}
    calls: dict[str, int] = {}
    for e in events:
        oid = e.get("operation_id")
        if oid and oid not in names:
            names[oid] = (e.get("component") or "", e.get("operation") or "",
                          e.get("parent_operation_id"))
        meta = e.get("metadata") or {}
        if e.get("operation") == "llm_call" and not meta.get("failed") and (
                e.get("level") == "debug" or meta.get("estimated")):
            parent = e.get("parent_operation_id") or ""
            calls[parent] = calls.get(parent, 0) + 1
        snap = e.get("budget_snapshot") or {}
        cp.used = max(cp.used, int(snap.get("used") or 0))

    def phase_of(oid: str | None) -> str | None:
        seen = 0
        while oid in names and seen < 100:
            _comp, name, parent = names[oid]
            if name in _PHASE_OF:
                return _PHASE_OF[name]
            oid, seen = parent, seen + 1
        return None

    booked = 0
    for e in events:
        used = e.get("tokens_used")
        if not used or not (e.get("message") or "").startswith(_END_VERBS):
            continue
        oid = e["operation_id"]
        tokens = structure(used, TokenUsage, what="tokens in the journal")
        if tokens.total_tokens == 0 and not calls.get(oid):
            continue
        cp.records.append(OperationTokenRecord(oid, e.get("component") or "",
                                               e.get("operation") or "", phase_of(oid), tokens,
                                               calls.get(oid, 0)))
        booked += tokens.total_tokens
    if cp.used > booked:
        cp.records.append(OperationTokenRecord(
            "op_unaccounted", "orchestrator", "cut_short_operations", None,
            TokenUsage(0, 0, total_tokens=cp.used - booked), 0))
