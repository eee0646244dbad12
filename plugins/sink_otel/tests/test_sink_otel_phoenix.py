"""End to end with Arize Phoenix, an observability tool users run: `phoenix serve` started here,
a real `sigil orchestrate` exporting to its OTLP/HTTP port, and the run's spans read back from
Phoenix's REST API.

Phoenix is not in the test extra: it pins ``anthropic<2`` (and pulls pandas, pyarrow, ...), so
it cannot share an environment with provider_anthropic. ``.ci/run`` installs it into a venv of
its own (about 70 s, 850 MB) and sets ``SIGIL_PHOENIX`` to its ``phoenix`` executable; a
``phoenix`` on PATH works too. Without either the test skips and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from otel_helpers import LEAD


def phoenix_executable() -> str | None:
    explicit = os.environ.get("SIGIL_PHOENIX")
    if explicit and Path(explicit).is_file():
        return explicit
    return shutil.which("phoenix")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def phoenix(tmp_path: Path):
    exe = phoenix_executable()
    if exe is None:
        pytest.skip("Arize Phoenix is not installed: set SIGIL_PHOENIX to its `phoenix` "
                    "executable (.ci/run installs it into its own venv; it pins anthropic<2 "
                    "and cannot share the test environment)")
    port = free_port()
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(tmp_path / "phoenix"),
           "PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(free_port()),
           "PHOENIX_HOST": "127.0.0.1", "PHOENIX_TELEMETRY_ENABLED": "false"}
    log = open(tmp_path / "phoenix.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([exe, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail("phoenix serve exited: "
                            + (tmp_path / "phoenix.log").read_text()[-2000:])
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    # A machine too loaded to start Phoenix in 5 minutes says nothing about
                    # sink_otel: skip, with Phoenix's last words.
                    pytest.skip("phoenix serve did not answer within 300 s: "
                                + (tmp_path / "phoenix.log").read_text()[-500:])
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_phoenix_shows_the_run_as_one_trace_with_its_llm_calls(otel_cli, phoenix):
    # Phoenix is a big application on a small shared machine: its first answer may take more
    # than the default 2 s bound, which is not what this test is about.
    otel_cli.write_config("otel:\n  flush_timeout_ms: 60000\n")
    proc = otel_cli("orchestrate", LEAD, env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix,
        "OTEL_METRICS_EXPORTER": "none",  # Phoenix takes traces only
        "SIGIL_OFFLINE_LATENCY_MS": "50"})
    assert proc.returncode == 0, proc.stderr
    assert "sink_otel" not in proc.stderr, proc.stderr
    (record,) = otel_cli.records()
    summary = record["token_summary"]
    completed = {e["operation_id"] for e in record["events"]
                 if e.get("duration_ms") is not None and e["operation"] != "complete_execution"}
    expected = len(completed)
    # Phoenix ingests asynchronously: poll its API until the whole trace is there.
    deadline = time.monotonic() + 60
    while True:
        spans = get_json(phoenix + "/v1/projects/default/spans?limit=1000")["data"]
        if len(spans) >= expected + 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len({s["context"]["trace_id"] for s in spans}) == 1
    roots = [s for s in spans if s["parent_id"] is None]
    assert [r["name"] for r in roots] == ["invoke_agent sigil"]
    assert roots[0]["attributes"]["sigil.session.id"] == record["session_id"]
    assert roots[0]["span_kind"] == "AGENT"  # Phoenix read gen_ai.operation.name
    ids = {s["context"]["span_id"] for s in spans}
    assert all(s["parent_id"] in ids for s in spans if s["parent_id"] is not None)
    assert completed <= {s["attributes"].get("sigil.operation_id") for s in spans}
    # Phoenix understood the GenAI attributes: LLM spans with its own token counts.
    llm = [s for s in spans if s["span_kind"] == "LLM"]
    assert len(llm) == summary["llm_calls"]
    assert sum(s["attributes"]["llm.token_count.total"] for s in llm) == summary["total_tokens"]
    assert sum(s["attributes"]["llm.token_count.completion"] for s in llm) == summary[
        "output_tokens"]
    assert {s["attributes"]["llm.model_name"] for s in llm} == {"sigil-offline-1"}
