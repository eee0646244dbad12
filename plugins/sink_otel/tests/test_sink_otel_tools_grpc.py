"""Tool calls as execute_tool spans (a plugin's tools, through the real CLI), and OTLP over gRPC."""

from __future__ import annotations

import textwrap
import threading
from concurrent import futures
from pathlib import Path

import pytest

TOOLS_PLUGIN = '''
from sigil_core import Plan, PlanStep, ReasoningResult, ToolError, hookimpl


class Lookup:
    name = "crm_lookup"
    description = "Find a company in the CRM"
    input_schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}

    async def call(self, arguments):
        return [{"company": arguments["q"], "tier": "enterprise"}]


class Write:
    name = "crm_write"
    description = "Write a note to the CRM"
    input_schema = {"type": "object", "properties": {"note": {"type": "string"}}}

    async def call(self, arguments):
        raise RuntimeError("the CRM is read-only today")


class Toolish:
    name = "toolish"

    async def execute(self, run, step, context):
        found = await run.call_tool("crm_lookup", {"q": "Acme Corp"})
        try:
            await run.call_tool("crm_write", {"note": "called"})
        except ToolError as exc:
            run.event("warning", "tools", "crm_write", f"note not written: {exc.code}")
        answer = await run.llm.generate(context.prompt(str(found)), system=context.system(),
                                        purpose="reason", component="reasoning")
        return ReasoningResult(output=answer.text, confidence=0.8)


@hookimpl
def sigil_register_tools(register):
    register(Lookup())
    register(Write())


@hookimpl
def sigil_register_strategies(register):
    register(Toolish())


@hookimpl
def sigil_plan(run, task):
    return Plan(goal=task, steps=[PlanStep("look_up", "Look the company up", complexity="simple",
                                           reasoning_strategy="toolish", needs_contract=True)])
'''


def install_plugin(site: Path, source: str = TOOLS_PLUGIN, name: str = "test_crm") -> None:
    """``source`` as an installed plugin ``name`` (a module and its dist-info in ``site``)."""
    (site / f"sigil_{name}.py").write_text(textwrap.dedent(source))
    info = site / f"sigil_{name}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: sigil-{name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[sigil]\n{name} = sigil_{name}\n")


#: A provider whose call for one purpose fails (a 529 from the API, say) and a strategy that
#: makes that call, survives it and answers with a second call.
FAILING_CALL_PLUGIN = '''
from sigil_core import LLMError, Plan, PlanStep, ReasoningResult, hookimpl
from sigil_core.testing import ScriptedProvider
from sigil_core.testing.schema_instance import instance_for

provider = ScriptedProvider(
    by_purpose={"probe": LLMError("the model is overloaded (529)", recoverable=True)},
    default=lambda request: instance_for(request.schema) if request.schema else "an answer")


class Probing:
    name = "probing"

    async def execute(self, run, step, context):
        try:
            await run.llm.generate("probe", purpose="probe", component="reasoning")
        except LLMError:
            pass
        answer = await run.llm.generate(context.prompt(), purpose="reason", component="reasoning")
        return ReasoningResult(output=answer.text, confidence=0.5)


@hookimpl
def sigil_register_providers(register):
    register(provider)


@hookimpl
def sigil_register_strategies(register):
    register(Probing())


@hookimpl
def sigil_plan(run, task):
    return Plan(goal=task, steps=[PlanStep("probe", "Probe the model", complexity="simple",
                                           reasoning_strategy="probing")])
'''


def test_a_failed_llm_call_is_a_chat_span_with_error_status(otel_cli, otel_receiver, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, FAILING_CALL_PLUGIN, "failing_call")
    proc = otel_cli("orchestrate", "Probe the model", "--provider", "scripted",
                    env={"PYTHONPATH": str(site), "OTEL_EXPORTER_OTLP_ENDPOINT": otel_receiver.url})
    assert "sink_otel" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    spans = otel_receiver.spans()
    chats = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    failed = [s for s in chats if s["attributes"].get("sigil.purpose") == "probe"]
    assert len(failed) == 1, [(s["name"], s["attributes"].get("sigil.purpose")) for s in chats]
    span = failed[0]
    # OpenTelemetry GenAI conventions: the failed call has its span, status ERROR, error.type.
    assert span["kind"] == 3 and span["status_code"] == 2  # CLIENT, ERROR
    assert span["attributes"]["error.type"] == "SYSTEM_004"
    assert "overloaded (529)" in span["status_message"]
    assert span["attributes"]["gen_ai.provider.name"] == "scripted"
    assert "gen_ai.usage.input_tokens" not in span["attributes"]  # nothing was billed
    assert [e["attributes"]["exception.type"] for e in span["events"]] == ["LLMError"]
    strategy = next(s for s in spans if s["name"] == "probing")
    assert span["parent_span_id"] == strategy["span_id"]
    ok = [s for s in chats if s["attributes"].get("sigil.purpose") == "reason"]
    assert len(ok) == 1 and ok[0]["status_code"] != 2
    durations = otel_receiver.metrics()["gen_ai.client.operation.duration"]
    assert any(p["attributes"].get("error.type") == "SYSTEM_004" for p in durations)


def test_tool_calls_are_execute_tool_spans_with_status(otel_cli, otel_receiver, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site)
    proc = otel_cli("orchestrate", "Look up Acme Corp in the CRM and summarise it",
                    env={"PYTHONPATH": str(site), "OTEL_EXPORTER_OTLP_ENDPOINT": otel_receiver.url})
    assert "sink_otel" not in proc.stderr, proc.stderr
    spans = otel_receiver.spans()
    tools = {s["attributes"]["gen_ai.tool.name"]: s for s in spans
             if s["attributes"].get("gen_ai.operation.name") == "execute_tool"}
    assert set(tools) == {"crm_lookup", "crm_write"}, proc.stderr
    ok, bad = tools["crm_lookup"], tools["crm_write"]
    assert ok["name"] == "execute_tool crm_lookup" and ok["status_code"] == 0
    assert ok["attributes"]["gen_ai.tool.call.id"] == ok["attributes"]["sigil.operation_id"]
    assert ok["attributes"]["sigil.results_count"] == 1
    assert bad["status_code"] == 2 and bad["attributes"]["error.type"] == "TOOL_002"
    assert "read-only" in bad["status_message"]
    strategy = next(s for s in spans if s["name"] == "toolish")
    assert ok["parent_span_id"] == bad["parent_span_id"] == strategy["span_id"]
    assert ok["end"] <= bad["start"] + 2_000_000  # one after the other
    notes = [e for e in strategy["events"] if e["attributes"].get("sigil.level") == "warning"]
    assert [n["attributes"]["sigil.message"] for n in notes] == ["note not written: TOOL_002"]


def test_grpc_export_with_the_grpc_extra(otel_cli):
    grpc = pytest.importorskip("grpc", reason="the grpc extra is not installed")
    from opentelemetry.proto.collector.metrics.v1 import (
        metrics_service_pb2,
        metrics_service_pb2_grpc,
    )
    from opentelemetry.proto.collector.trace.v1 import (
        trace_service_pb2,
        trace_service_pb2_grpc,
    )

    got: list = []
    lock = threading.Lock()

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            with lock:
                got.extend(s for rs in request.resource_spans for ss in rs.scope_spans
                           for s in ss.spans)
            return trace_service_pb2.ExportTraceServiceResponse()

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, request, context):
            return metrics_service_pb2.ExportMetricsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        proc = otel_cli("orchestrate", "Qualify this lead: Ann Lee, CTO at Initech",
                        env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                             "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    finally:
        server.stop(0)
    assert proc.returncode == 0, proc.stderr
    assert "sink_otel" not in proc.stderr, proc.stderr
    names = [s.name for s in got]
    assert names.count("invoke_agent sigil") == 1 and any(n.startswith("chat ") for n in names)
    assert len({s.trace_id for s in got}) == 1
