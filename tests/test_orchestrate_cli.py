"""End to end: the README's run through the real CLI, its events, files and token figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from core_cli import LEAD_TASK

REQUIRED = ("id", "timestamp", "level", "component", "operation", "message", "session_id",
            "correlation_id", "operation_id")
PHASE_ORDER = [
    ("cli", "initialize"), ("router", "route_request"), ("planner", "create_plan"),
    ("memory", "retrieve_context"), ("orchestrator", "execute_plan"),
    ("contracts", "validate_output"), ("memory", "extract_memories"),
    ("cli", "complete_execution"),
]


def test_lead_example_runs_offline_and_writes_the_three_outputs(sigil):
    proc = sigil("orchestrate", LEAD_TASK)
    assert proc.returncode == 0, proc.stderr
    assert "offline model" in proc.stdout
    assert "Tokens:" in proc.stdout
    assert "Traceback" not in proc.stderr
    sessions = sigil.sessions
    assert len(list(sessions.glob("*.jsonl"))) == 1
    assert len(list(sessions.glob("*.json"))) == 1
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    daily = sigil.cwd / "outputs" / "logs" / f"{day}.jsonl"
    assert daily.exists()
    session_id = sigil.session_json()["session_id"]
    daily_ids = {json.loads(line)["session_id"] for line in daily.read_text().splitlines()}
    assert session_id in daily_ids


def test_events_follow_the_spec_phase_order_with_required_fields(sigil):
    assert sigil("orchestrate", LEAD_TASK).returncode == 0
    events = sigil.session_jsonl()
    for e in events:
        for field in REQUIRED:
            assert e.get(field), (field, e)
        assert e["timestamp"].endswith("Z") and len(e["timestamp"]) == 24
        assert "budget_snapshot" in e
    first_seen = []
    for e in events:
        key = (e["component"], e["operation"])
        if key in PHASE_ORDER and key not in first_seen:
            first_seen.append(key)
    assert first_seen == PHASE_ORDER


def test_budget_used_never_decreases_and_the_sums_agree(sigil):
    assert sigil("orchestrate", LEAD_TASK).returncode == 0
    events = sigil.session_jsonl()
    used = [e["budget_snapshot"]["used"] for e in events]
    assert used == sorted(used)
    record = sigil.session_json()
    summary = record["token_summary"]
    op_sum = sum(op["tokens"]["total_tokens"] for op in summary["operations"])
    assert summary["total_tokens"] == op_sum == sum(summary["by_component"].values())
    assert summary["total_tokens"] == summary["budget"]["used"] == used[-1]
    assert summary["total_tokens"] == sum(summary["by_phase"].values())
    # Completion events carry each operation's own tokens: they add up to the total as well.
    completed = sum(e["tokens_used"]["total_tokens"] for e in events
                    if e.get("tokens_used") and e["message"].startswith(("Completed", "Failed")))
    assert completed == summary["total_tokens"]
    assert record["summary"]["total_events"] == len(record["events"]) == len(events)
    assert record["summary"]["success"] is True


def test_output_file_holds_the_result_and_token_summary(sigil):
    out = sigil.cwd / "result.json"
    proc = sigil("orchestrate", "--output", str(out), "--session", "sess_fixed", LEAD_TASK)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["result"]["session_id"] == "sess_fixed"
    assert 0 <= data["result"]["output"]["score"] <= 100
    assert data["result"]["validation"]["success"] is True
    assert data["token_summary"]["total_tokens"] > 0
    assert (sigil.sessions / "sess_fixed.json").exists()


def test_json_format_prints_machine_readable_result(sigil):
    proc = sigil("orchestrate", "--format", "json", LEAD_TASK)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["result"]["intent"] == "execute_task"
    assert data["token_summary"]["llm_calls"] >= 3


def test_too_small_budget_ends_with_token_001_and_a_partial_result(sigil):
    proc = sigil("orchestrate", "--budget", "900", LEAD_TASK)
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "TOKEN_001" in proc.stdout
    record = sigil.session_json()
    critical = [e for e in record["events"] if e["level"] == "critical"]
    assert critical and critical[-1]["error_info"]["error_code"] == "TOKEN_001"
    assert critical[-1]["error_info"]["recoverable"] is False
    assert "partial_result" in record
    assert record["summary"]["success"] is False
    assert record["token_summary"]["budget"]["used"] <= 900
    warnings = [e for e in record["events"] if e["operation"] == "budget"]
    assert [e["level"] for e in warnings] in (["warning"], ["warning", "critical"], [])


def test_budget_alerts_fire_once_each(sigil):
    # About 1,700 tokens are needed offline; 2,000 crosses 80% (and maybe 95%) exactly once.
    proc = sigil("orchestrate", "--budget", "2000", LEAD_TASK,
                 env={"SIGIL_DISABLE_PLUGINS": "reasoning_tot,memory_sqlite,router_default"})
    events = sigil.session_jsonl()
    alerts = [e["level"] for e in events if e["operation"] == "budget"]
    assert alerts.count("warning") == 1
    assert alerts.count("critical") <= 1
    assert max(e["budget_snapshot"]["used"] for e in events) <= 2000
    assert proc.returncode in (0, 3)


def test_dry_run_shows_route_and_plan_without_executing(sigil):
    proc = sigil("orchestrate", "--dry-run", "--format", "json", LEAD_TASK)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)["result"]["output"]
    assert [s["name"] for s in out["plan"]["steps"]][-1] == "generate_recommendation"
    assert out["estimated_tokens"] > 0
    events = sigil.session_jsonl()
    assert not [e for e in events if e["component"] == "reasoning"]


def test_monitor_without_transport_says_so_and_runs_on(sigil):
    proc = sigil("orchestrate", "--monitor", LEAD_TASK,
                 env={"SIGIL_DISABLE_PLUGINS": "monitor_ws"})
    assert proc.returncode == 0, proc.stderr
    assert "no monitor transport is installed" in proc.stderr


def test_sessions_list_and_show_render_the_tree(sigil):
    assert sigil("orchestrate", "--session", "sess_tree", LEAD_TASK).returncode == 0
    listing = sigil("sessions", "list")
    assert "sess_tree" in listing.stdout
    shown = sigil("sessions", "show", "sess_tree")
    assert shown.returncode == 0
    assert "orchestrator/execute_plan" in shown.stdout
    assert "├─ " in shown.stdout or "└─ " in shown.stdout
    assert "tokens booked" in shown.stdout
    missing = sigil("sessions", "show", "nope")
    assert missing.returncode == 2 and "no session" in missing.stderr


def test_research_task_uses_the_research_contract(sigil):
    proc = sigil("orchestrate", "--format", "json", "Research market trends for AI startups")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["result"]
    assert result["validation"]["contract_name"] == "research_report"
    assert len(result["output"]["key_findings"]) >= 3
