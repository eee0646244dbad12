"""End to end: ``sigil orchestrate --provider openai`` as a subprocess, on the real SDK, against
the test server (also a subprocess)."""

from __future__ import annotations

import socket
from collections import Counter

from sigil_core.testing import LEAD_ANSWERS, SigilCLI, run_in_worker

TASK = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"
ANSWERS = str(LEAD_ANSWERS)


def key3(u: dict) -> tuple[int, int, int]:
    return u["prompt_tokens"], u["completion_tokens"], u["prompt_tokens_details"]["cached_tokens"]


def assert_no_secret(cli: SigilCLI, proc) -> None:
    assert "SECRET" not in proc.stdout and "SECRET" not in proc.stderr
    for path in cli.cwd.parent.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".yaml", ".gz", ".log"):
            assert b"SECRET" not in path.read_bytes(), f"API key leaked into {path}"


def check_tokens_match_server(record: dict, calls: list[dict]) -> None:
    served = [c for c in calls if c["status"] == 200 and c.get("usage")]
    events = record["events"]
    llm = [e for e in events if e["operation"] == "llm_call" and e["level"] == "debug"]

    def booked(e: dict) -> tuple[int, int, int]:
        m = e["metadata"]
        return m["input_tokens"] + m["cache_read_tokens"], m["output_tokens"], \
            m["cache_read_tokens"]

    # Every call the server answered appears once in the events with the figures it reported.
    assert Counter(key3(c["usage"]) for c in served) == Counter(booked(e) for e in llm)
    # Each operation's completion event carries the sum of its own calls.
    children: dict[str, int] = {}
    for e in llm:
        prompt, completion, _ = booked(e)
        children[e["parent_operation_id"]] = children.get(e["parent_operation_id"], 0) + \
            prompt + completion
    completed = {e["operation_id"]: e for e in events
                 if e["message"].startswith("Completed ") and e.get("tokens_used")}
    for op_id, tokens in children.items():
        assert completed[op_id]["tokens_used"]["total_tokens"] == tokens
    summary = record["token_summary"]
    assert summary["total_tokens"] == sum(c["usage"]["total_tokens"] for c in served)
    assert summary["cache_read_tokens"] == sum(key3(c["usage"])[2] for c in served)
    assert summary["output_tokens"] == sum(c["usage"]["completion_tokens"] for c in served)
    assert summary["llm_calls"] == len(served)
    assert summary["budget"]["used"] == summary["total_tokens"]


def test_lead_example_tokens_equal_what_the_server_reported(openai_server_process, openai_cli):
    server = openai_server_process("--answers", ANSWERS, "--output-tokens", "120",
                                   "--min-cache-tokens", "0", "--api-key",
                                   "sk-openai-test-SECRET")
    cli = openai_cli(server.base_url)
    proc = cli("orchestrate", "--provider", "openai", TASK)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    record = cli.last_session()
    calls = server.calls()
    assert {c["name"] for c in calls if c.get("name")} >= {"PlanAnswer", "reason_answer"}
    assert {c["response_format"] for c in calls if c.get("name")} == {"json_schema"}
    check_tokens_match_server(record, calls)
    assert record["result"]["output"]["tier"] == "hot"
    models = {e["metadata"]["model"] for e in record["events"]
              if e["operation"] == "llm_call" and e["level"] == "debug"}
    assert models == {"openai:gpt-4o-mini"}
    # The SDK was imported in the background from the moment the provider was chosen
    # (overlapped with start-up), once, before the first request reached the server.
    imports = [e for e in record["events"] if e["operation"] == "sdk_import"]
    assert [e["metadata"]["module"] for e in imports] == ["openai"]
    assert imports[0]["metadata"]["preloaded"] is True
    assert "provider: openai" in proc.stdout
    assert_no_secret(cli, proc)

    # A second identical run: the server reports the repeated prefixes as cached.
    again = cli("orchestrate", "--provider", "openai", TASK)
    assert again.returncode == 0, again.stderr
    second = cli.last_session()
    assert second["session_id"] != record["session_id"]
    assert second["token_summary"]["cache_read_tokens"] > 0
    assert "cached" in again.stdout
    check_tokens_match_server(second, server.calls()[len(calls):])
    assert_no_secret(cli, again)


def test_runs_complete_with_30_percent_failures(openai_server_process, openai_cli):
    server = openai_server_process("--answers", ANSWERS, "--fail-rate", "0.3",
                                   "--fail-kinds", "429,500,503", "--retry-after", "0.01",
                                   "--seed", "8")
    cli = openai_cli(server.base_url)
    cli.write_config("openai:\n  max_retries: 6\n  max_total_wait_s: 20\n")
    proc = cli("orchestrate", "--provider", "openai", TASK)
    assert proc.returncode == 0, proc.stderr
    calls = server.calls()
    failed = [c for c in calls if c["status"] in ("429", "500", "503")]
    assert {c["status"] for c in failed} == {"429", "500", "503"}, "the seed hits every kind"
    record = cli.last_session()
    warnings = [e for e in record["events"] if e["level"] == "warning"
                and e["operation"] == "llm_call" and e.get("error_info")]
    assert len(warnings) == len(failed)
    assert all(w["error_info"]["recoverable"] for w in warnings)
    assert {w["error_info"]["retry_after_ms"] for w in warnings} == {10}
    check_tokens_match_server(record, calls)
    assert_no_secret(cli, proc)


def test_a_server_without_json_schema_is_driven_through_the_fallbacks(
        tmp_path, openai_server_process, openai_cli):
    # Function calling first; a server with neither json_schema nor tools ends in JSON mode.
    for flags, mode in ((("--no-json-schema",), None),
                        (("--no-json-schema", "--no-tools"), "json_object")):
        server = openai_server_process("--answers", ANSWERS, *flags)
        cli = openai_cli(server.base_url, root=tmp_path / (mode or "tools"))
        proc = cli("orchestrate", "--provider", "openai", TASK)
        assert proc.returncode == 0, proc.stderr
        calls = server.calls()
        refused = [c for c in calls if c["status"] == 400]
        # Detected, then remembered: the router's call and the plan made meanwhile go out
        # together, so each may be refused before either answer teaches the provider; no
        # later call is.
        per_call = 1 if mode is None else 2
        assert per_call <= len(refused) <= 2 * per_call, "detected, then remembered"
        answered = [c for c in calls if c["status"] == 200 and c.get("name")]
        assert answered and all(c["response_format"] == mode for c in answered)
        if mode is None:
            assert all(c["tool"] == c["name"] for c in answered)
        record = cli.last_session()
        assert record["result"]["output"]["tier"] == "hot"
        notes = [e for e in record["events"] if e["level"] == "warning"
                 and "from now on" in e["message"]]
        assert len(notes) == len(refused)
        check_tokens_match_server(record, calls)


def test_a_server_that_omits_usage_is_booked_the_estimate_never_zero(
        openai_server_process, openai_cli):
    server = openai_server_process("--answers", ANSWERS, "--no-usage")
    cli = openai_cli(server.base_url)
    proc = cli("orchestrate", "--provider", "openai", TASK)
    assert proc.returncode == 0, proc.stderr
    record = cli.last_session()
    llm = [e for e in record["events"] if e["operation"] == "llm_call"
           and e["level"] == "debug"]
    assert llm and all(e["metadata"]["input_tokens"] > 0 and e["metadata"]["output_tokens"] > 0
                       for e in llm)
    estimated = [e for e in record["events"] if e["level"] == "warning"
                 and "reported no token usage" in e["message"]]
    assert len(estimated) == len(llm)
    assert record["token_summary"]["total_tokens"] > 0


def test_server_down_is_exit_1_one_clear_line_and_a_saved_partial_session(openai_cli):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    cli = openai_cli(url)
    cli.write_config("openai:\n  max_retries: 2\n  max_total_wait_s: 5\n")
    proc = cli("orchestrate", "--provider", "openai", TASK)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    # stdout has the one error line; stderr only the live event log (no traceback).
    lines = [line for line in proc.stdout.splitlines() if "cannot reach" in line]
    assert len(lines) == 1, proc.stdout
    assert lines[0].startswith(f"Error [SYSTEM_004]: cannot reach {url}: is the server running?")
    record = cli.last_session()
    assert "partial_result" in record
    assert any(f"cannot reach {url}" in e["error_info"]["error_message"]
               for e in record["events"] if e.get("error_info"))
    assert_no_secret(cli, proc)


def test_a_local_profile_needs_no_key_and_never_gets_the_openai_one(
        openai_server_process, openai_cli):
    server = openai_server_process("--answers", ANSWERS, "--models", "llama3.1:8b")
    cli = openai_cli(None)  # OPENAI_API_KEY set (for OpenAI), no OPENAI_BASE_URL
    cli.write_config(f"openai:\n  profiles:\n    ollama:\n      base_url: {server.base_url}"
                           "\n      model: llama3.1:8b\n")
    proc = cli("orchestrate", "--provider", "openai:ollama", TASK)
    assert proc.returncode == 0, proc.stderr
    record = cli.last_session()
    models = {e["metadata"]["model"] for e in record["events"]
              if e["operation"] == "llm_call" and e["level"] == "debug"}
    assert models == {"openai:llama3.1:8b"}
    check_tokens_match_server(record, server.calls())
    # The profile's name alone, from the config file, picks it too.
    cli.write_config(f"llm:\n  provider: ollama\nopenai:\n  profiles:\n    ollama:\n"
                           f"      base_url: {server.base_url}\n      model: llama3.1:8b\n")
    again = cli("orchestrate", TASK, env={"OPENAI_API_KEY": ""})
    assert again.returncode == 0, again.stderr
    assert_no_secret(cli, proc)

    check = cli("openai", "check", "--profile", "ollama")
    assert check.returncode == 0, check.stderr
    [call] = server.calls()[-1:]
    prompt, completion, cached = key3(call["usage"])
    assert f"openai:llama3.1:8b at {server.base_url}" in check.stdout
    assert f"tokens: {prompt} prompt ({cached} cached) / {completion} completion" in check.stdout
    assert "latency: " in check.stdout

    unknown = cli("openai", "check", "--profile", "vllm")
    assert unknown.returncode == 2
    assert "no profile 'vllm' in openai.profiles; configured: ollama" in unknown.stderr
    bad = cli("orchestrate", "--provider", "openai:vllm", TASK)
    assert bad.returncode == 2
    assert "provider 'openai' has no endpoint profile 'vllm'; configured: ollama" in bad.stderr


def test_an_unknown_model_lists_the_served_ones(openai_server_process, openai_cli):
    server = openai_server_process("--models", "llama3.1:8b,qwen2.5:7b")
    proc = openai_cli(server.base_url, SIGIL_MODEL="llama9")("orchestrate", "--provider",
                                                             "openai", TASK)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    out = proc.stdout + proc.stderr
    assert (f"model 'llama9' is not served by {server.base_url}; it offers: llama3.1:8b, "
            "qwen2.5:7b") in out


def test_a_run_forked_from_the_worker_finds_the_sdk_imported(openai_server_process, openai_cli):
    """`sigil worker start` keeps the SDK imported: a run forked from it imports nothing."""
    server = openai_server_process("--answers", ANSWERS)
    run_in_worker(openai_cli(server.base_url), "openai", "--provider", "openai", TASK)
    assert server.calls()
