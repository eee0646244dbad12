"""Configuration that is wrong says so: unknown sections, budgets that do not add up, bad env."""

from __future__ import annotations

import pytest

TASK = "Summarise the benefits of green tea"


def test_a_misspelt_section_is_a_warning_naming_the_closest_key(sigil):
    (sigil.home / "config.yaml").write_text(
        "budgte: {total: 300}\nmcp_servers: {}\nrouter: {}\nmonitor_ws: {}\nzzqqxx: 1\n")
    proc = sigil("orchestrate", "--dry-run", TASK)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, proc.stderr
    assert "'budgte'" in warnings[0] and "did you mean 'budget'" in warnings[0]
    assert "'zzqqxx'" in warnings[1] and "known sections" in warnings[1]


@pytest.mark.parametrize("config, key", [
    ("budget: {allocations: {reasoning: 0.9, memory: 0.8}}", "budget.allocations"),
    ("budget: {warning_threshold: -0.2}", "warning_threshold"),
    ("budget: {warning_threshold: 0.9, critical_threshold: 0.5}", "critical_threshold"),
    ("logging: {file: {rotation: {max_size_mb: -1}}}", "logging.file.rotation.max_size_mb"),
    ("logging: {file: {retention_days: -3}}", "logging.file.retention_days"),
    ("llm: {offline_latency_ms: -5}", "llm.offline_latency_ms"),
])
def test_budget_and_threshold_errors_name_the_key(sigil, config, key):
    (sigil.home / "config.yaml").write_text(config + "\n")
    proc = sigil("orchestrate", "--dry-run", TASK)
    assert proc.returncode == 2, (config, proc.stderr)
    assert key in proc.stderr and "SYSTEM_002" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("value", ["-100", "nan", "inf", "abc"])
def test_offline_latency_env_is_validated(sigil, value):
    proc = sigil("orchestrate", "--dry-run", TASK, env={"SIGIL_OFFLINE_LATENCY_MS": value})
    assert proc.returncode == 2, proc.stderr
    assert "SIGIL_OFFLINE_LATENCY_MS" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
