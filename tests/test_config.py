"""Configuration precedence (flag > env > file > default) and the daily log's rotation."""

from __future__ import annotations

import json

from core_cli import LEAD_TASK


def initialize_event(sigil) -> dict:
    return next(e for e in sigil.session_jsonl() if e["operation"] == "initialize")


def test_budget_precedence_flag_over_env_over_file(sigil):
    (sigil.home / "config.yaml").write_text("budget:\n  total: 50000\n")
    assert sigil("orchestrate", "--session", "s1", LEAD_TASK).returncode == 0
    events = [json.loads(x) for x in (sigil.sessions / "s1.jsonl").read_text().splitlines()]
    assert events[0]["budget_snapshot"]["total_budget"] == 50000
    assert sigil("orchestrate", "--session", "s2", LEAD_TASK,
                 env={"SIGIL_TOKEN_BUDGET": "60000"}).returncode == 0
    events = [json.loads(x) for x in (sigil.sessions / "s2.jsonl").read_text().splitlines()]
    assert events[0]["budget_snapshot"]["total_budget"] == 60000
    assert sigil("orchestrate", "--session", "s3", "--budget", "70000", LEAD_TASK,
                 env={"SIGIL_TOKEN_BUDGET": "60000"}).returncode == 0
    events = [json.loads(x) for x in (sigil.sessions / "s3.jsonl").read_text().splitlines()]
    assert events[0]["budget_snapshot"]["total_budget"] == 70000


def test_spec_config_file_is_accepted(sigil):
    (sigil.home / "config.yaml").write_text("""
cli:
  default_budget: 256000
  monitor: {enabled: false, port: 8000}
  output: {default_format: json, include_logs: false}
logging:
  level: info
  buffer_size: 100
  flush_interval_ms: 100
  file:
    enabled: true
    path: outputs/logs
    format: jsonl
    rotation: {max_size_mb: 100, max_files: 30}
  stream: {enabled: true, port: 8000, heartbeat_interval_ms: 5000}
budget:
  total: 256000
  warning_threshold: 0.80
  critical_threshold: 0.95
  allocations: {reasoning: 0.45, memory: 0.15, planner: 0.12, contracts: 0.10, tools: 0.08,
                router: 0.04, context: 0.03, orchestrator: 0.02, evolution: 0.01}
""")
    proc = sigil("orchestrate", LEAD_TASK)
    assert proc.returncode == 0, proc.stderr


def test_daily_log_rotates_compresses_and_keeps_max_files(sigil):
    (sigil.home / "config.yaml").write_text(
        "logging:\n  file:\n    rotation: {max_size_mb: 0.004, max_files: 3}\n")
    for i in range(3):
        assert sigil("orchestrate", "--session", f"rot{i}", LEAD_TASK).returncode == 0
    logs = sorted(p.name for p in (sigil.cwd / "outputs" / "logs").iterdir())
    assert any(name.endswith(".gz") for name in logs), logs
    assert len([n for n in logs if n.endswith(".gz")]) <= 3


def test_log_level_filters_the_daily_log_but_not_the_session(sigil):
    assert sigil("orchestrate", "--session", "lvl", LEAD_TASK,
                 env={"SIGIL_LOG_LEVEL": "warning"}).returncode == 0
    daily = next((sigil.cwd / "outputs" / "logs").glob("*.jsonl")).read_text().splitlines()
    assert all(json.loads(x)["level"] in ("warning", "error", "critical") for x in daily)
    session = (sigil.sessions / "lvl.jsonl").read_text().splitlines()
    assert any(json.loads(x)["level"] == "info" for x in session)


def test_single_aggregate_file_from_sigil_log_file(sigil):
    target = sigil.cwd / "custom" / "all.jsonl"
    assert sigil("orchestrate", LEAD_TASK, env={"SIGIL_LOG_FILE": str(target)}).returncode == 0
    assert target.exists() and target.read_text().count("\n") > 10


def test_output_settings_shape_the_output_file(sigil):
    assert sigil("orchestrate", "--session", "o1", "--output", "plain.json",
                 LEAD_TASK).returncode == 0
    assert "logs" not in json.loads((sigil.cwd / "plain.json").read_text())
    (sigil.home / "config.yaml").write_text("cli:\n  output: {include_logs: true}\n")
    proc = sigil("orchestrate", "--session", "o2", "--output", "full.json", LEAD_TASK)
    assert proc.returncode == 0, proc.stderr
    logs = json.loads((sigil.cwd / "full.json").read_text())["logs"]
    session = [json.loads(x) for x in (sigil.sessions / "o2.jsonl").read_text().splitlines()]
    assert [e["id"] for e in logs] == [e["id"] for e in session][:len(logs)]
    assert len(logs) >= len(session) - 2  # all but the closing events written after the file
    (sigil.home / "config.yaml").write_text("cli:\n  output: {default_format: yaml}\n")
    proc = sigil("orchestrate", LEAD_TASK)
    assert proc.returncode == 2 and "cli.output.default_format" in proc.stderr
    (sigil.home / "config.yaml").write_text("logging:\n  stream: {heartbeat_interval_ms: 5}\n")
    proc = sigil("orchestrate", LEAD_TASK)
    assert proc.returncode == 2 and "logging.stream.heartbeat_interval_ms" in proc.stderr
