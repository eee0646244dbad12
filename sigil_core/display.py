"""What `sigil orchestrate` shows: live progress on a terminal, plain lines otherwise, and the
result with its token summary at the end.

Progress goes to stderr and the result to stdout, so `sigil orchestrate ... > result.txt` and
pipes get only the result. rich is imported only when stderr is a terminal.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Self

import click

_PHASE_OPS = {
    "initialize": "initialize", "route_request": "route", "create_plan": "plan",
    "retrieve_context": "retrieve", "execute_plan": "execute", "validate_output": "validate",
    "extract_memories": "extract", "complete_execution": "complete",
}


class Display:
    def __init__(self, *, verbose: bool = False, budget: int = 256_000,
                 stream: Any = None) -> None:
        self.verbose = verbose
        self.stream = stream or sys.stderr
        self.live_mode = self.stream.isatty() and not verbose
        self.phase = "initialize"
        self.steps: dict[str, str] = {}
        self.used = 0
        self.budget = budget
        self._live: Any = None

    # ----------------------------------------------------------------- context

    def __enter__(self) -> Self:
        if self.live_mode:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._render(), console=Console(file=self.stream),
                              refresh_per_second=8, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    # ----------------------------------------------------------------- events

    def on_event(self, event: Any) -> None:
        snap = event.budget_snapshot
        if snap is not None:
            self.used = snap.used
            self.budget = snap.total_budget
        phase = _PHASE_OPS.get(event.operation)
        if phase and event.message.startswith(("Starting", "Execution")):
            self.phase = phase
        if event.component == "reasoning" and event.metadata and "step_name" in event.metadata:
            name = event.metadata["step_name"]
            if event.message.startswith("Starting"):
                self.steps[name] = f"running ({event.operation})"
            elif event.message.startswith("Completed"):
                self.steps[name] = f"done ({event.operation})"
            elif event.message.startswith("Failed"):
                self.steps[name] = f"failed ({event.operation})"
        if self._live is not None:
            self._live.update(self._render())
        elif self.verbose:
            self._plain(event)
        elif event.level in ("warning", "error", "critical"):
            # Not a terminal: stderr carries only what needs attention (-v for every event).
            self._plain(event)

    def _plain(self, event: Any) -> None:
        tokens = f" [{event.tokens_used.total_tokens} tok]" if event.tokens_used else ""
        click.echo(f"{event.timestamp[11:23]} {event.level.upper():<8} {event.component}/"
                   f"{event.operation}: {event.message}{tokens}", err=True)

    def note(self, message: str) -> None:
        if self._live is not None:
            self._live.console.print(message)
        else:
            click.echo(message, err=True)

    def _render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        table.add_column(style="cyan", no_wrap=True)
        table.add_column()
        table.add_row("Phase", self.phase)
        for name, state in self.steps.items():
            table.add_row(f"  {name}", state)
        pct = 100.0 * self.used / self.budget if self.budget else 0.0
        table.add_row("Tokens", f"{self.used:,} / {self.budget:,} ({pct:.1f}%)")
        table.add_row("", ProgressBar(total=self.budget, completed=self.used, width=40))
        return table

    # ----------------------------------------------------------------- the outcome

    def print_outcome(self, outcome: Any, fmt: str = "text") -> None:
        from .orchestrator import result_dict
        from .tables import plural

        result = outcome.result
        summary = result.tokens
        for note in outcome.notes:
            click.echo(note, err=True)
        if fmt == "json":
            data: dict[str, Any] = {"result": result_dict(result),
                                    "token_summary": summary.to_dict() if summary else None,
                                    "session_files": outcome.session_files,
                                    "exit_code": outcome.exit_code}
            if result.error is not None:
                # The same top-level shape as a usage error: {"error": {...}}.
                data["error"] = {"type": result.error.error_type,
                                 "message": result.error.error_message,
                                 "code": result.error.error_code,
                                 "exit_code": outcome.exit_code}
            click.echo(json.dumps(data, indent=2, default=str))
            return
        if getattr(outcome, "dry_run", False):
            print_dry_run(result)
            return
        out = click.echo
        out(f"Session {result.session_id}  (provider: {result.provider})")
        if getattr(outcome, "provider_notice", None):
            out(f"Note: {outcome.provider_notice}")
        if result.route:
            r = result.route
            out(f"Route: {r.intent}, complexity {r.complexity:.2f}, strategy "
                f"{r.reasoning_strategy} ({r.source})")
        if result.plan:
            from .dag import plan_levels

            # Steps of one level run at the same time: "a & b -> c".
            out("Plan: " + " -> ".join(" & ".join(level) for level in plan_levels(result.plan)))
        if result.validation:
            v = result.validation
            status = "passed" if v.success else "FAILED: " + "; ".join(v.problems)
            if v.placeholders:
                status += " (offline placeholders)"
            out(f"Contract {v.contract_name}: {status} (attempt {v.attempt})")
        if result.error:
            out(f"Error [{result.error.error_code}]: {result.error.error_message}")
        body = result.output
        if result.partial and body is None:
            # Not "Result: null": say there is none, and where what was done is kept.
            where = next((f for f in outcome.session_files if f.endswith(".json")),
                         "the session's .json file")
            done = len(result.steps)
            out(f"No final result; the partial result ({done} finished step"
                f"{'' if done == 1 else 's'}) is in {where}")
        else:
            if result.partial:
                out(f"Partial result (also in {outcome.session_files[-1]}):"
                    if outcome.session_files else "Partial result:")
            else:
                out("Result:")
            out(body if isinstance(body, str) else json.dumps(body, indent=2, default=str))
        if summary:
            out(f"Tokens: {summary.total_tokens:,} used of {summary.budget_total:,} "
                f"({summary.percentage_used:.2f}%), {plural(summary.llm_calls, 'LLM call')}, "
                f"{summary.input_tokens:,} in / {summary.output_tokens:,} out"
                + (f", {summary.cache_read_tokens:,} cached" if summary.cache_read_tokens else "")
                + (f"; {summary.estimated_tokens:,} of them estimated (calls cut short by the "
                   "stop, booked at their reservation)" if summary.estimated_tokens else ""))
            if summary.by_component:
                out("  by component: " + ", ".join(
                    f"{k} {v:,}" for k, v in sorted(summary.by_component.items(),
                                                    key=lambda kv: -kv[1])))
            if summary.by_phase:
                out("  by phase: " + ", ".join(f"{k} {v:,}" for k, v in summary.by_phase.items()))
        if outcome.session_files:
            out(f"Session log: {outcome.session_files[0]}")


def print_dry_run(result: Any) -> None:
    """``--dry-run`` as text: the route, then the plan as a table, or the direct path."""
    from .tables import plural, print_table, table

    out = click.echo
    data = result.output or {}
    r = result.route
    calls = plural(result.tokens.llm_calls if result.tokens else 0, "LLM call")
    out(f"Dry run: nothing executed; {calls} for routing and planning "
        f"(provider: {result.provider})")
    if r is not None:
        out(f"Route: {r.intent}, complexity {r.complexity:.2f}, strategy "
            f"{r.reasoning_strategy} ({r.source})")
    if data.get("path") not in (None, "plan"):
        out(f"Path: answered by the {data['path']} handler: no plan, no contract, no memory "
            f"phase; about {data.get('estimated_tokens', 0):,} tokens")
        return
    steps = (data.get("plan") or {}).get("steps") or []
    t = table("#", "step", "depends on", "strategy", "est. tokens", right=(0, 4), wrap=(2,))
    for i, step in enumerate(steps, 1):
        t.add_row(str(i), step["name"], ", ".join(step.get("dependencies") or []) or "-",
                  step.get("reasoning_strategy") or "-", f"{step.get('estimated_tokens') or 0:,}")
    print_table(t)
    out(f"Estimated tokens: {data.get('estimated_tokens', 0):,}; contract: "
        f"{data.get('contract') or 'none'}")
