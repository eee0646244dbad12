"""Sigil's own ``sigil monitor`` view: the layout of the original monitor.py, corrected.

``monitor.py`` is shipped verbatim (it must keep working against the server unchanged), with
its flaws: it cuts timestamps to ``[-12:-5]``, which drops the hour's first digit of Sigil's
``...T16:34:27.123Z`` (``6:34:27``), assumes a 256,000-token budget, and titles itself after
the original product. This subclass keeps its client and message handling and draws the same
two panels right: whole ``HH:MM:SS`` times, the run's real budget, Sigil's name.
"""

from __future__ import annotations

from typing import Any

from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table

from .monitor import MonitorClient

LEVEL_STYLES = {"trace": "dim", "debug": "dim", "info": "blue", "warning": "yellow",
                "error": "red", "critical": "red bold"}


def clock(timestamp: str) -> str:
    """``HH:MM:SS`` of an ISO 8601 timestamp (``2026-01-01T16:34:27.123Z`` -> ``16:34:27``)."""
    _, sep, rest = (timestamp or "").partition("T")
    return rest[:8] if sep else (timestamp or "")[:8]


class SigilView(MonitorClient):
    """monitor.py's client with Sigil's dashboard."""

    total_budget: int = 256_000

    def _process_log_entry(self, entry: dict[str, Any]) -> None:
        super()._process_log_entry(entry)
        snapshot = entry.get("budget_snapshot") or {}
        if snapshot.get("total_budget"):
            self.total_budget = int(snapshot["total_budget"])

    def _render_dashboard(self) -> Panel:
        status: dict[str, Any] = self.current_status
        used = int(status.get("tokens_used") or 0)
        total = self.total_budget or 1
        pct = 100.0 * used / total
        color = "red" if pct > 80 else "yellow" if pct > 50 else "green"
        state = Table(title="Execution Status", expand=True)
        state.add_column("Metric", style="cyan")
        state.add_column("Value", style="green")
        state.add_row("Session", status.get("session_id") or "Waiting...")
        state.add_row("Status", "[green]Active[/green]" if status.get("is_alive")
                      else "[yellow]Idle[/yellow]")
        state.add_row("Current Operation", status.get("current_operation") or "-")
        state.add_row("Current Component", status.get("current_component") or "-")
        state.add_row("Tokens Used", f"[{color}]{used:,}[/{color}] / {total:,} ({pct:.1f}%)")
        state.add_row("Budget Remaining", f"{int(status.get('budget_remaining') or 0):,}")

        logs = Table(title="Recent Logs", expand=True)
        logs.add_column("Time", width=8, no_wrap=True)
        logs.add_column("Level", width=8)
        logs.add_column("Component", width=12)
        logs.add_column("Operation", width=20)
        logs.add_column("Tokens", width=8, justify="right")
        logs.add_column("Message", overflow="fold")
        for log in self.recent_logs[-10:]:
            level = log.get("level", "info")
            style = LEVEL_STYLES.get(level, "white")
            tokens = (log.get("tokens_used") or {}).get("total_tokens", "")
            logs.add_row(clock(log.get("timestamp", "")), f"[{style}]{level.upper()}[/{style}]",
                         log.get("component", ""), log.get("operation", ""), str(tokens),
                         log.get("message", ""))
        layout = Layout()
        layout.split_column(Layout(state, name="status", size=10), Layout(logs, name="logs"))
        return Panel(layout, title="[bold]Sigil Monitor[/bold]", border_style="blue")
