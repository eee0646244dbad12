"""Real `sigil orchestrate` runs exporting to a real OTLP/HTTP receiver that decodes protobuf."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from otel_helpers import LEAD
from otlp_receiver import Receiver

SLOW = {"SIGIL_OFFLINE_LATENCY_MS": "150"}  # steps take long enough to overlap visibly


def by_op(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["attributes"]["sigil.operation_id"]: s for s in spans
            if "sigil.operation_id" in s["attributes"]}


def run(otel_cli, receiver, *args: str, env: dict[str, str] | None = None):
    proc = otel_cli("orchestrate", *args, LEAD,
                    env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, **SLOW, **(env or {})})
    (record,) = otel_cli.records()
    return proc, record, receiver.spans()


def test_a_run_is_one_trace_shaped_like_its_operation_tree(otel_cli, otel_receiver):
    proc, record, spans = run(otel_cli, otel_receiver)
    assert proc.returncode == 0, proc.stderr
    assert "sink_otel" not in proc.stderr  # nothing to warn about
    assert len({s["trace_id"] for s in spans}) == 1
    roots = [s for s in spans if s["parent_span_id"] is None]
    assert [r["name"] for r in roots] == ["invoke_agent sigil"]
    root = roots[0]
    assert root["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert root["attributes"]["sigil.session.id"] == record["session_id"]
    assert root["attributes"]["sigil.outcome"] == "success"
    assert root["attributes"]["sigil.budget.used"] == record["token_summary"]["budget"]["used"]
    assert root["resource"]["service.name"] == "sigil"

    # Every operation that completed is a span, and each span's parent is its parent operation.
    events = record["events"]
    completed = {e["operation_id"] for e in events if e.get("duration_ms") is not None
                 and e["operation"] != "complete_execution"}
    spans_by_op = by_op(spans)
    assert completed <= set(spans_by_op)
    by_id = {s["span_id"]: s for s in spans}
    session_op = events[0]["parent_operation_id"]  # the session's own operation
    for e in events:
        span = spans_by_op.get(e["operation_id"])
        if span is None or e["operation"] == "complete_execution":
            continue
        parent = by_id[span["parent_span_id"]]
        if e["parent_operation_id"] == session_op:
            assert parent is root, e
        else:
            assert parent["attributes"]["sigil.operation_id"] == e["parent_operation_id"], e
        assert parent["start"] <= span["start"] + 2_000_000  # ms timestamps: 2 ms of slack
        assert span["end"] <= parent["end"] + 2_000_000

    # One chat span per LLM call; their tokens add up to the session's token summary.
    chats = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    summary = record["token_summary"]
    assert len(chats) == summary["llm_calls"] > 0
    total = lambda key: sum(s["attributes"].get(key, 0) for s in chats)
    assert total("sigil.usage.total_tokens") == summary["total_tokens"]
    assert total("gen_ai.usage.output_tokens") == summary["output_tokens"]
    assert total("gen_ai.usage.input_tokens") == (summary["input_tokens"]
                                                 + summary["cache_read_tokens"]
                                                 + summary["cache_write_tokens"])
    chat = chats[0]["attributes"]
    assert chat["gen_ai.provider.name"] == "offline"
    assert chat["gen_ai.response.model"] == "sigil-offline-1"
    assert chats[0]["name"] == f"chat {chat['gen_ai.request.model']}"
    assert all(s["kind"] == 3 for s in chats)  # SPAN_KIND_CLIENT

    # The plan's two independent first steps ran concurrently: their spans overlap.
    steps = {s["attributes"]["sigil.step"]: s for s in spans
             if s["attributes"].get("sigil.component") == "reasoning"
             and "sigil.step" in s["attributes"] and s["attributes"].get("sigil.strategy")}
    a, b = steps["assess_bant"], steps["research_lead"]
    assert a["start"] < b["end"] and b["start"] < a["end"]
    assert by_id[a["parent_span_id"]] is by_id[b["parent_span_id"]]  # siblings

    # Phases are named on their spans, and the phase spans hang from the session.
    phases = {s["attributes"].get("sigil.phase") for s in spans}
    assert {"route", "plan", "retrieve", "execute", "validate"} <= phases


def test_contents_stay_out_unless_the_user_opts_in(otel_cli, otel_receiver):
    proc, _, spans = run(otel_cli, otel_receiver)
    assert proc.returncode == 0, proc.stderr
    exported = json.dumps([s["attributes"] for s in spans]) + json.dumps(
        [s["events"] for s in spans])
    assert "John Smith" not in exported and "gen_ai.input.messages" not in exported
    assert "gen_ai.output.messages" not in exported


def test_contents_are_exported_when_capture_is_switched_on(otel_cli, otel_receiver):
    proc, record, spans = run(
        otel_cli, otel_receiver,
        env={"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"})
    assert proc.returncode == 0, proc.stderr
    chats = [s["attributes"] for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    messages = json.loads(chats[0]["gen_ai.input.messages"])
    assert messages[0]["role"] == "user" and messages[0]["parts"][0]["type"] == "text"
    assert all("gen_ai.output.messages" in c for c in chats)
    output = json.loads(chats[-1]["gen_ai.output.messages"])[0]
    assert output["role"] == "assistant" and output["parts"][0]["content"]
    root = next(s for s in spans if s["parent_span_id"] is None)
    assert root["attributes"]["sigil.task"] == record["task"]


def test_budget_exhaustion_is_an_error_status_with_its_code(otel_cli, otel_receiver):
    proc, record, spans = run(otel_cli, otel_receiver, "--budget", "900")
    assert proc.returncode == 3, proc.stderr
    root = next(s for s in spans if s["parent_span_id"] is None)
    assert root["status_code"] == 2  # STATUS_CODE_ERROR
    assert root["attributes"]["error.type"] == "TOKEN_001"
    assert root["attributes"]["sigil.outcome"] == "budget_exhausted"
    failed = [s for s in spans if s["status_code"] == 2 and s is not root]
    # The operation that hit the limit (and those above it) fail with TOKEN_001; a sibling
    # running at that moment is cancelled (the core's SYSTEM_004 CancelledError).
    codes = {s["attributes"]["sigil.error.code"] for s in failed
             if "CancelledError" not in s["status_message"]}
    assert codes == {"TOKEN_001"}
    failing = [e for e in record["events"] if (e.get("error_info") or {}).get("error_code")
               == "TOKEN_001" and e.get("duration_ms") is not None]
    assert {e["operation_id"] for e in failing} <= {
        s["attributes"]["sigil.operation_id"] for s in failed}
    assert all(s["status_message"].startswith(s["attributes"]["sigil.error.code"])
               for s in failed)
    assert all(any(e["name"] == "exception" for e in s["events"]) for s in failed)


def test_warnings_are_span_events(otel_cli, otel_receiver):
    proc, record, spans = run(otel_cli, otel_receiver, "--budget", "2000",
                              env={"SIGIL_OFFLINE_LATENCY_MS": "0"})
    alerts = [e for e in record["events"] if e["operation"] == "budget"]
    assert alerts, proc.stderr
    notes = [e for s in spans for e in s["events"] if e["name"] == "budget"]
    assert sorted(n["attributes"]["sigil.operation_id"] for n in notes) == sorted(
        e["operation_id"] for e in alerts)
    assert {n["attributes"]["sigil.level"] for n in notes} == {e["level"] for e in alerts}
    assert all(n["attributes"]["sigil.message"].startswith("Token budget") for n in notes)
    assert not [s for s in spans if s["name"] == "budget"]  # events, not spans


def test_metrics_use_the_genai_names(otel_cli, otel_receiver):
    proc, record, _spans = run(otel_cli, otel_receiver)
    assert proc.returncode == 0, proc.stderr
    metrics = otel_receiver.metrics()
    usage = metrics["gen_ai.client.token.usage"]
    by_type: dict[str, float] = {}
    for point in usage:
        kind = point["attributes"]["gen_ai.token.type"]
        by_type[kind] = by_type.get(kind, 0) + point["sum"]
    summary = record["token_summary"]
    assert by_type["output"] == summary["output_tokens"]
    assert by_type["input"] == summary["input_tokens"] + summary["cache_read_tokens"] + summary[
        "cache_write_tokens"]
    duration = metrics["gen_ai.client.operation.duration"]
    assert sum(p["count"] for p in duration) == summary["llm_calls"]
    assert duration[0]["unit"] == "s"
    budget = metrics["sigil.session.budget.used"]
    assert [(p["count"], p["sum"]) for p in budget] == [(1, summary["budget"]["used"])]


def test_traceparent_puts_the_run_inside_the_callers_trace(otel_cli, otel_receiver):
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    proc, _, spans = run(otel_cli, otel_receiver,
                         env={"TRACEPARENT": f"00-{trace_id}-{span_id}-01"})
    assert proc.returncode == 0, proc.stderr
    assert {s["trace_id"] for s in spans} == {trace_id}
    root = next(s for s in spans if s["name"].startswith("invoke_agent"))
    assert root["parent_span_id"] == span_id


def test_config_section_endpoint_headers_and_resource(otel_cli, otel_receiver):
    otel_cli.write_config(f"""otel:
  endpoint: {otel_receiver.url}
  headers: {{x-team-token: abc123}}
  service_name: lead-desk
  resource_attributes: {{deployment.environment: test, team: sales}}
  flush_timeout_ms: 30000
""")
    proc = otel_cli("orchestrate", LEAD, env={"OTEL_RESOURCE_ATTRIBUTES": "team=growth"})
    assert proc.returncode == 0, proc.stderr
    spans = otel_receiver.spans()
    assert spans
    resource = spans[0]["resource"]
    assert resource["service.name"] == "lead-desk"
    assert resource["deployment.environment"] == "test"
    assert resource["team"] == "growth"  # the environment wins over the config file
    assert all(h.get("x-team-token") == "abc123" for h in otel_receiver.headers)
    status = otel_cli("plugins")
    line = next(x for x in status.stdout.splitlines() if x.startswith("sink_otel"))
    assert f"exporting to {otel_receiver.url} over http/protobuf" in line


def test_without_an_endpoint_the_plugin_idles_and_says_so(otel_cli):
    listing = otel_cli("plugins")
    line = next(x for x in listing.stdout.splitlines() if x.startswith("sink_otel"))
    assert "active (idle: no OTLP endpoint" in line
    # Idle, it costs the run nothing: no SDK imported, no worker thread to close it on.
    code = ("import asyncio, sys; from sigil_core.cli import cli\n"
            "hops = []; real = asyncio.to_thread\n"
            "def counted(fn, *a, **k):\n    hops.append(fn.__name__)\n"
            "    return real(fn, *a, **k)\n"
            "asyncio.to_thread = counted\n"
            "try:\n    cli(['orchestrate', 'Qualify this lead: Ann Lee, CTO at Initech'],"
            " prog_name='sigil')\nexcept SystemExit as e:\n"
            "    print('EXIT', e.code, 'opentelemetry.sdk' in sys.modules,"
            " 'close_sinks' in hops)\n")
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], cwd=otel_cli.cwd, env=otel_cli.env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert "EXIT 0 False False" in proc.stdout, proc.stdout + proc.stderr


def test_bad_otel_config_is_one_clear_line(otel_cli):
    otel_cli.write_config("otel:\n  endpiont: http://127.0.0.1:4318\n")
    proc = otel_cli("orchestrate", LEAD)
    assert proc.returncode == 2
    assert "unknown key otel.endpiont" in proc.stderr and "Traceback" not in proc.stderr
    listing = otel_cli("plugins")
    assert "misconfigured" in listing.stdout
    otel_cli.write_config("")
    proc = otel_cli("orchestrate", LEAD, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"})
    assert proc.returncode == 2 and "must be an http:// or https:// URL" in proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The documented bound: a collector costs a run at most otel.flush_timeout_ms (0.5 s here) at
# its end. Asserted by behaviour, not by timing the run (tests never assert wall-clock times):
# a stalled collector still holds the export when the run has ended, and the warning says the
# run stopped waiting after the bound; the others answer (badly) and are reported as such.


def test_a_stalled_collector_does_not_hold_the_run(otel_cli):
    otel_cli.write_config("otel:\n  flush_timeout_ms: 500\n")
    with Receiver(misbehave="stall") as receiver:
        proc = otel_cli("orchestrate", LEAD, env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})
        held = receiver.held  # the run is over; the collector has not answered
    assert proc.returncode == 0, proc.stderr
    assert held >= 1
    warnings = [line for line in proc.stderr.splitlines() if "sink_otel" in line]
    assert len(warnings) == 1 and receiver.url in warnings[0], proc.stderr
    assert "no answer within 0.5 s" in warnings[0]
    assert "Traceback" not in proc.stderr
    assert otel_cli.session_json()["status"] == "ok"


@pytest.mark.parametrize("misbehave", ["reject", "hangup"])
def test_a_sloppy_collector_costs_one_warning(otel_cli, misbehave):
    otel_cli.write_config("otel:\n  flush_timeout_ms: 500\n")
    with Receiver(misbehave=misbehave) as receiver:
        proc = otel_cli("orchestrate", LEAD, env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "sink_otel" in line]
    assert len(warnings) == 1 and receiver.url in warnings[0], proc.stderr
    assert len(warnings[0]) < 300  # the gist, not the exporter's whole repr
    assert "Traceback" not in proc.stderr


def test_an_unreachable_collector_costs_one_warning(otel_cli):
    otel_cli.write_config("otel:\n  flush_timeout_ms: 500\n")
    url = f"http://127.0.0.1:{free_port()}"
    proc = otel_cli("orchestrate", LEAD, env={"OTEL_EXPORTER_OTLP_ENDPOINT": url})
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "sink_otel" in line]
    assert len(warnings) == 1 and url in warnings[0], proc.stderr
    assert "Traceback" not in proc.stderr and "Transient error" not in proc.stderr


def test_a_traces_only_backend_gets_the_trace_and_one_hint(otel_cli):
    from otlp_receiver import Receiver

    with Receiver(traces_only=True) as receiver:  # as Jaeger and Phoenix: no /v1/metrics
        proc = otel_cli("orchestrate", LEAD, env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})
        assert proc.returncode == 0
        assert any(s["name"] == "invoke_agent sigil" for s in receiver.spans())
        warnings = [line for line in proc.stderr.splitlines() if "sink_otel" in line]
        assert len(warnings) == 1 and "OTEL_METRICS_EXPORTER=none" in warnings[0], proc.stderr
        proc = otel_cli("orchestrate", LEAD, env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                                                  "OTEL_METRICS_EXPORTER": "none"})
        assert proc.returncode == 0 and "sink_otel" not in proc.stderr, proc.stderr


def test_concurrent_runs_in_one_process_are_one_trace_each(otel_cli, otel_receiver, tmp_path):
    tasks = tmp_path / "leads.jsonl"
    tasks.write_text("".join(json.dumps({"id": i, "task": t}) + "\n" for i, t in (
        ("a", LEAD), ("b", "Qualify this lead: Ann Lee, CTO at Globex"),
        ("c", "Research the market for CRM tools"))))
    proc = otel_cli("batch", str(tasks), "--concurrency", "3",
                    env={"OTEL_EXPORTER_OTLP_ENDPOINT": otel_receiver.url, **SLOW})
    assert proc.returncode == 0, proc.stderr
    sessions = {r["session_id"]: r for r in otel_cli.records()}
    spans = otel_receiver.spans()
    by_trace: dict[str, set[str]] = {}
    for s in spans:
        by_trace.setdefault(s["trace_id"], set()).add(s["attributes"]["sigil.session.id"])
    assert sorted(len(v) for v in by_trace.values()) == [1, 1, 1]
    assert set().union(*by_trace.values()) == set(sessions)
    for trace_id, (session,) in by_trace.items():
        chats = [s for s in spans if s["trace_id"] == trace_id
                 and s["attributes"].get("gen_ai.operation.name") == "chat"]
        assert (sum(c["attributes"]["sigil.usage.total_tokens"] for c in chats)
                == sessions[session]["token_summary"]["total_tokens"])
