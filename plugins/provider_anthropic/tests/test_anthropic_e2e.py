"""End to end: ``sigil orchestrate`` as a subprocess, on the real SDK, against the test server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from importlib.metadata import entry_points
from pathlib import Path

from sigil_core.testing import LEAD_ANSWERS

TASK = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"
ANSWERS = str(LEAD_ANSWERS)


def others_disabled() -> str:
    # This suite tests the provider; other installed plugins (and their own choices, e.g. two
    # routers) are switched off so only the core's builtins and this plugin run.
    return ",".join(sorted({ep.name for ep in entry_points(group="sigil")} - {"anthropic"}))


def orchestrate(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sigil_core", "orchestrate", *args, TASK],
                          cwd=cwd, env={**env, "SIGIL_DISABLE_PLUGINS": others_disabled()},
                          capture_output=True, text=True, timeout=120, check=False)


def session(cwd: Path) -> dict:
    files = sorted((cwd / "outputs" / "sessions").glob("*.json"),
                   key=lambda p: p.stat().st_mtime)
    return json.loads(files[-1].read_text())


def usage_key(u: dict) -> tuple[int, int, int]:
    return (u["input_tokens"], u["output_tokens"], u["cache_read_input_tokens"])


def total(u: dict) -> int:
    return (u["input_tokens"] + u["output_tokens"] + u["cache_read_input_tokens"]
            + u["cache_creation_input_tokens"])


def assert_no_secret(cwd: Path, proc: subprocess.CompletedProcess) -> None:
    assert "SECRET" not in proc.stdout and "SECRET" not in proc.stderr
    for path in (cwd / "outputs").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl"):
            assert "SECRET" not in path.read_text(), f"API key leaked into {path}"


def check_tokens_match_server(record: dict, calls: list[dict]) -> None:
    served = [c for c in calls if c["path"] == "/v1/messages" and c.get("usage")]
    events = record["events"]
    llm_events = [e for e in events if e["operation"] == "llm_call" and e["level"] == "debug"]
    # Every call the server answered appears once in the events with the figures it reported.
    assert Counter(usage_key(c["usage"]) for c in served) == Counter(
        (e["metadata"]["input_tokens"], e["metadata"]["output_tokens"],
         e["metadata"]["cache_read_tokens"]) for e in llm_events)
    by_key = {usage_key(c["usage"]): total(c["usage"]) for c in served}
    # Each operation's completion event carries the sum of its own calls.
    children: dict[str, int] = {}
    for e in llm_events:
        key = (e["metadata"]["input_tokens"], e["metadata"]["output_tokens"],
               e["metadata"]["cache_read_tokens"])
        children[e["parent_operation_id"]] = children.get(e["parent_operation_id"], 0) + by_key[key]
    completed = {e["operation_id"]: e for e in events
                 if e["message"].startswith("Completed ") and e.get("tokens_used")}
    for op_id, tokens in children.items():
        assert completed[op_id]["tokens_used"]["total_tokens"] == tokens
    summary = record["token_summary"]
    assert summary["total_tokens"] == sum(total(c["usage"]) for c in served)
    assert summary["input_tokens"] == sum(c["usage"]["input_tokens"] for c in served)
    assert summary["output_tokens"] == sum(c["usage"]["output_tokens"] for c in served)
    assert summary["cache_read_tokens"] == sum(c["usage"]["cache_read_input_tokens"]
                                               for c in served)
    assert summary["cache_write_tokens"] == sum(c["usage"]["cache_creation_input_tokens"]
                                                for c in served)
    assert summary["llm_calls"] == len(served)
    assert summary["budget"]["used"] == summary["total_tokens"]


def test_lead_example_tokens_equal_what_the_server_reported(tmp_path, anthropic_server_process,
                                                            anthropic_cli_env):
    server = anthropic_server_process("--answers", ANSWERS, "--output-tokens", "120",
                                      "--min-cache-tokens", "0")
    proc = orchestrate(tmp_path, anthropic_cli_env(server.url))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    record = session(tmp_path)
    calls = server.calls()
    assert len([c for c in calls if c["path"] == "/v1/messages"]) >= 3
    assert {c["tool"] for c in calls if c.get("tool")} >= {"PlanAnswer", "reason_answer"}
    check_tokens_match_server(record, calls)
    assert record["result"]["output"]["tier"] == "hot"
    models = {e["metadata"]["model"] for e in record["events"] if e["operation"] == "llm_call"
              and e["level"] == "debug"}
    assert models == {"anthropic:claude-sonnet-4-6"}
    assert_no_secret(tmp_path, proc)
    # The SDK was imported in the background from the moment the provider was chosen
    # (overlapped with start-up), once, before the first request reached the server.
    imports = [e for e in record["events"] if e["operation"] == "sdk_import"]
    assert [e["metadata"]["module"] for e in imports] == ["anthropic"]
    assert imports[0]["metadata"]["preloaded"] is True

    # A second identical run reads the stable prefixes from the (simulated) prompt cache.
    again = orchestrate(tmp_path, anthropic_cli_env(server.url))
    assert again.returncode == 0, again.stderr
    second = session(tmp_path)
    assert second["session_id"] != record["session_id"]
    assert second["token_summary"]["cache_read_tokens"] > 0
    assert "cached" in again.stdout
    calls = server.calls()[len(calls):]
    check_tokens_match_server(second, calls)


def test_runs_complete_with_30_percent_failures(tmp_path, anthropic_server_process,
                                                anthropic_cli_env):
    server = anthropic_server_process("--answers", ANSWERS, "--fail-rate", "0.3",
                                      "--fail-kinds", "429,529,500", "--retry-after", "0.01",
                                      "--seed", "3", "--min-cache-tokens", "0")
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("anthropic:\n  max_retries: 6\n  max_total_wait_s: 20\n")
    proc = orchestrate(tmp_path, anthropic_cli_env(server.url))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    calls = server.calls()
    failed = [c for c in calls if c["status"] in ("429", "529", "500")]
    assert failed, "the seed should make some calls fail"
    record = session(tmp_path)
    warnings = [e for e in record["events"] if e["level"] == "warning"
                and e["operation"] == "llm_call" and e.get("error_info")]
    assert len(warnings) == len(failed)
    assert all(w["error_info"]["recoverable"] and w["error_info"]["retry_after_ms"] == 10
               for w in warnings)
    check_tokens_match_server(record, calls)
    assert_no_secret(tmp_path, proc)


def test_server_down_is_a_clear_error_with_a_saved_partial_session(tmp_path, anthropic_cli_env):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("anthropic:\n  max_retries: 2\n  max_total_wait_s: 5\n")
    proc = orchestrate(tmp_path, anthropic_cli_env(f"http://127.0.0.1:{port}"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert "cannot reach the Anthropic API" in proc.stdout + proc.stderr
    record = session(tmp_path)
    assert "partial_result" in record
    errors = [e for e in record["events"] if e.get("error_info")]
    assert any("cannot reach the Anthropic API" in e["error_info"]["error_message"]
               for e in errors)
    assert_no_secret(tmp_path, proc)


def test_check_command_reports_model_and_usage(tmp_path, anthropic_server_process,
                                               anthropic_cli_env):
    server = anthropic_server_process()
    proc = subprocess.run([sys.executable, "-m", "sigil_core", "anthropic", "check"],
                          cwd=tmp_path, env=anthropic_cli_env(server.url), capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    [call] = [c for c in server.calls() if c["path"] == "/v1/messages"]
    assert f"{call['usage']['input_tokens']} in / {call['usage']['output_tokens']} out" in proc.stdout
    assert "anthropic:claude-sonnet-4-6" in proc.stdout


def test_lead_example_with_human_step_names_completes(tmp_path, anthropic_server_process,
                                                      anthropic_cli_env):
    # Real models name steps as prose ("Research the Lead"); the plan must run, not be
    # rejected: names become identifiers and the dependencies follow them.
    answers = json.loads(LEAD_ANSWERS.read_text())
    human = {"research_lead": "Research the Lead", "assess_bant": "Assess BANT",
             "generate_recommendation": "Generate Recommendation"}
    for step in answers["PlanAnswer"]["steps"]:
        step["name"] = human[step["name"]]
        step["dependencies"] = [human[d] for d in step["dependencies"]]
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(answers))
    server = anthropic_server_process("--answers", str(path), "--min-cache-tokens", "0")
    proc = orchestrate(tmp_path, anthropic_cli_env(server.url))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    record = session(tmp_path)
    plans = [c for c in server.calls() if c.get("tool") == "PlanAnswer"]
    assert len(plans) == 1  # no re-plan
    assert record["result"]["plan"]["steps"][2]["name"] == "generate_recommendation"
    assert record["result"]["plan"]["steps"][2]["dependencies"] == ["assess_bant"]
    assert record["result"]["output"]["tier"] == "hot"


def test_a_run_forked_from_the_worker_finds_the_sdk_imported(tmp_path, anthropic_server_process):
    """`sigil worker start` keeps the SDK imported: a run forked from it imports nothing."""
    import pytest

    from sigil_core.testing import SigilCLI

    if not sys.platform.startswith("linux"):
        pytest.skip("the worker needs Linux")
    server = anthropic_server_process("--answers", ANSWERS)
    cli = SigilCLI(tmp_path / "sigil", env={"ANTHROPIC_API_KEY": "sk-ant-test-SECRET",
                                            "ANTHROPIC_BASE_URL": server.url,
                                            "SIGIL_DISABLE_PLUGINS": others_disabled()})
    started = cli("worker", "start", "--idle-timeout", "120")
    assert started.returncode == 0, started.stderr
    assert "anthropic" in started.stdout  # the SDKs it imported
    try:
        proc = cli("orchestrate", TASK)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(cli("worker", "status", "--json").stdout)["runs"] == 1
    finally:
        cli("worker", "stop")
    assert [c for c in server.calls() if c["path"] == "/v1/messages"]
    (event,) = [e for e in cli.session_jsonl() if e["operation"] == "sdk_import"]
    assert event["metadata"]["already_imported"] is True
