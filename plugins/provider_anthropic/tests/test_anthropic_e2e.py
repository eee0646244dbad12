"""End to end: ``sigil orchestrate`` as a subprocess, on the real SDK, against the test server."""

from __future__ import annotations

import json
from collections import Counter

from sigil_core.testing import LEAD_ANSWERS, SigilCLI, run_in_worker

TASK = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"
ANSWERS = str(LEAD_ANSWERS)


def usage_key(u: dict) -> tuple[int, int, int]:
    return (u["input_tokens"], u["output_tokens"], u["cache_read_input_tokens"])


def total(u: dict) -> int:
    return (u["input_tokens"] + u["output_tokens"] + u["cache_read_input_tokens"]
            + u["cache_creation_input_tokens"])


def assert_no_secret(cli: SigilCLI, proc) -> None:
    assert "SECRET" not in proc.stdout and "SECRET" not in proc.stderr
    for path in (cli.cwd / "outputs").rglob("*"):
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


def test_lead_example_tokens_equal_what_the_server_reported(anthropic_server_process,
                                                            anthropic_cli):
    server = anthropic_server_process("--answers", ANSWERS, "--output-tokens", "120",
                                      "--min-cache-tokens", "0")
    cli = anthropic_cli(server.url)
    proc = cli("orchestrate", TASK)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    record = cli.last_session()
    calls = server.calls()
    assert len([c for c in calls if c["path"] == "/v1/messages"]) >= 3
    assert {c["tool"] for c in calls if c.get("tool")} >= {"PlanAnswer", "reason_answer"}
    check_tokens_match_server(record, calls)
    assert record["result"]["output"]["tier"] == "hot"
    models = {e["metadata"]["model"] for e in record["events"] if e["operation"] == "llm_call"
              and e["level"] == "debug"}
    assert models == {"anthropic:claude-sonnet-4-6"}
    assert_no_secret(cli, proc)
    # The SDK was imported in the background from the moment the provider was chosen
    # (overlapped with start-up), once, before the first request reached the server.
    imports = [e for e in record["events"] if e["operation"] == "sdk_import"]
    assert [e["metadata"]["module"] for e in imports] == ["anthropic"]
    assert imports[0]["metadata"]["preloaded"] is True

    # A second identical run reads the stable prefixes from the (simulated) prompt cache.
    again = cli("orchestrate", TASK)
    assert again.returncode == 0, again.stderr
    second = cli.last_session()
    assert second["session_id"] != record["session_id"]
    assert second["token_summary"]["cache_read_tokens"] > 0
    assert "cached" in again.stdout
    calls = server.calls()[len(calls):]
    check_tokens_match_server(second, calls)


def test_runs_complete_with_30_percent_failures(anthropic_server_process, anthropic_cli):
    server = anthropic_server_process("--answers", ANSWERS, "--fail-rate", "0.3",
                                      "--fail-kinds", "429,529,500", "--retry-after", "0.01",
                                      "--seed", "3", "--min-cache-tokens", "0")
    cli = anthropic_cli(server.url)
    cli.write_config("anthropic:\n  max_retries: 6\n  max_total_wait_s: 20\n")
    proc = cli("orchestrate", TASK)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    calls = server.calls()
    failed = [c for c in calls if c["status"] in ("429", "529", "500")]
    assert failed, "the seed should make some calls fail"
    record = cli.last_session()
    warnings = [e for e in record["events"] if e["level"] == "warning"
                and e["operation"] == "llm_call" and e.get("error_info")]
    assert len(warnings) == len(failed)
    assert all(w["error_info"]["recoverable"] and w["error_info"]["retry_after_ms"] == 10
               for w in warnings)
    check_tokens_match_server(record, calls)
    assert_no_secret(cli, proc)


def test_server_down_is_a_clear_error_with_a_saved_partial_session(anthropic_cli):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = anthropic_cli(f"http://127.0.0.1:{port}")
    cli.write_config("anthropic:\n  max_retries: 2\n  max_total_wait_s: 5\n")
    proc = cli("orchestrate", TASK)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert "cannot reach the Anthropic API" in proc.stdout + proc.stderr
    record = cli.last_session()
    assert "partial_result" in record
    errors = [e for e in record["events"] if e.get("error_info")]
    assert any("cannot reach the Anthropic API" in e["error_info"]["error_message"]
               for e in errors)
    assert_no_secret(cli, proc)


def test_check_command_reports_model_and_usage(anthropic_server_process, anthropic_cli):
    server = anthropic_server_process()
    proc = anthropic_cli(server.url)("anthropic", "check", timeout=60)
    assert proc.returncode == 0, proc.stderr
    [call] = [c for c in server.calls() if c["path"] == "/v1/messages"]
    assert f"{call['usage']['input_tokens']} in / {call['usage']['output_tokens']} out" in proc.stdout
    assert "anthropic:claude-sonnet-4-6" in proc.stdout


def test_lead_example_with_human_step_names_completes(tmp_path, anthropic_server_process,
                                                      anthropic_cli):
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
    cli = anthropic_cli(server.url)
    proc = cli("orchestrate", TASK)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    record = cli.last_session()
    plans = [c for c in server.calls() if c.get("tool") == "PlanAnswer"]
    assert len(plans) == 1  # no re-plan
    assert record["result"]["plan"]["steps"][2]["name"] == "generate_recommendation"
    assert record["result"]["plan"]["steps"][2]["dependencies"] == ["assess_bant"]
    assert record["result"]["output"]["tier"] == "hot"


def test_a_run_forked_from_the_worker_finds_the_sdk_imported(anthropic_server_process,
                                                              anthropic_cli):
    """`sigil worker start` keeps the SDK imported: a run forked from it imports nothing."""
    server = anthropic_server_process("--answers", ANSWERS)
    run_in_worker(anthropic_cli(server.url), "anthropic")
    assert [c for c in server.calls() if c["path"] == "/v1/messages"]
