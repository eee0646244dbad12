"""Tokens the provider billed are booked, also for calls cut short when a run ends (issue 21).

Two steps run concurrently against the local Messages API; one cannot fit its call in the
budget (TOKEN_001) while the other's call is already at the server. That call is billed whatever
Sigil does next, so its tokens must be booked: its real usage when it finishes within the grace
period (and its step's output kept in ``partial_result``), or its whole reservation, marked
estimated, when it is cancelled.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import sigil_provider_anthropic.plugin as anthropic_plugin
from sigil_provider_anthropic.testing.server import Fault, MessagesServer, ServerOptions

from sigil_core import (
    Orchestrator,
    Plan,
    PlanStep,
    PluginHost,
    ReasoningResult,
    RouteDecision,
    RunOptions,
    hookimpl,
    load_config,
)
from sigil_core.testing import LEAD_ANSWERS, SigilCLI


class FixedCalls:
    """A strategy making one call per step with the step's own ``max_tokens``."""

    name = "fixed_calls"

    def __init__(self, max_tokens: dict[str, int]) -> None:
        self.max_tokens = max_tokens

    async def execute(self, run, step, context):
        answer = await run.llm.generate(context.prompt(), system=context.system(),
                                        max_tokens=self.max_tokens[step.name],
                                        purpose="reason", component="reasoning")
        return ReasoningResult(output=f"{step.name}: {answer.text[:40]}", confidence=0.9)


class ConcurrentPlan:
    """Route and plan without model calls: ``width`` independent steps, then a final one."""

    def __init__(self, max_tokens: dict[str, int]) -> None:
        self.max_tokens = max_tokens

    @hookimpl
    def sigil_route(self, run, task):
        return RouteDecision("execute_task", 0.2, source="test")

    @hookimpl
    def sigil_plan(self, run, task, route, feedback):
        names = [n for n in self.max_tokens if n != "final"]
        steps = [PlanStep(n, f"work on part {n}", complexity="simple",
                          reasoning_strategy="fixed_calls") for n in names]
        steps.append(PlanStep("final", "combine the parts", complexity="simple",
                              dependencies=names, reasoning_strategy="fixed_calls"))
        return Plan(goal=task, steps=steps)

    @hookimpl
    def sigil_register_strategies(self, register):
        register(FixedCalls(self.max_tokens))


@pytest.fixture
def cut_env(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIGIL_HOME", str(tmp_path / "home"))
    for var in ("SIGIL_DISABLE_PLUGINS", "SIGIL_TOKEN_BUDGET", "SIGIL_USE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-SECRET")
    with MessagesServer(ServerOptions(min_cache_tokens=0, output_tokens=40)) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        yield server, tmp_path


async def run_once(tmp_path: Path, max_tokens: dict[str, int], budget: int, grace: float,
                   session: str):
    config = load_config()
    config.llm.stop_grace_s = grace
    host = PluginHost(load_entry_points=False).load()
    host.register(anthropic_plugin, name="anthropic")
    host.register(ConcurrentPlan(max_tokens), name="concurrent_plan")
    outcome = await Orchestrator(config, host).run(RunOptions(
        task="Summarise two parts of a memo", budget=budget, session=session,
        provider="anthropic"))
    record = json.loads((tmp_path / "outputs" / "sessions" / f"{session}.json").read_text())
    return outcome, record


def server_total(server: MessagesServer, expected_calls: int) -> int:
    """Billed tokens once every call that reached the server has been answered (a cancelled
    call is still answered, and billed, after its client went away)."""
    deadline = time.monotonic() + 30
    while len(server.message_calls()) < expected_calls and time.monotonic() < deadline:
        time.sleep(0.05)
    return sum(sum(v or 0 for v in c["usage"].values()) for c in server.message_calls())


def sent_calls(record: dict) -> int:
    """Calls that passed the budget check and were sent: booked ones, real or estimated."""
    return record["token_summary"]["llm_calls"]


async def test_in_flight_call_finishes_and_is_booked_when_a_sibling_exhausts_the_budget(cut_env):
    server, tmp_path = cut_env
    # "big" reserves what the budget has left and its answer is slow; "small" cannot fit its
    # call: TOKEN_001 while big's call is at the server.
    server.inject(Fault("slow", delay_s=1.0))
    outcome, record = await run_once(tmp_path, {"big": 8000, "small": 500, "final": 100},
                                     budget=2500, grace=10.0, session="sess_grace")
    assert outcome.exit_code == 3
    assert record["status"] == "budget_exhausted"
    assert "big" in record["partial_result"]["steps"]
    assert record["partial_result"]["steps"]["big"]["output"].startswith("big: ")
    billed = server_total(server, 1)
    assert len(server.message_calls()) == 1
    assert record["token_summary"]["total_tokens"] == billed > 0
    assert record["token_summary"]["estimated_tokens"] == 0


async def test_call_cancelled_after_the_grace_period_is_booked_at_its_reservation(cut_env):
    server, tmp_path = cut_env
    server.inject(Fault("slow", delay_s=1.0))
    outcome, record = await run_once(tmp_path, {"big": 8000, "small": 500, "final": 100},
                                     budget=2500, grace=0.0, session="sess_cut")
    assert outcome.exit_code == 3
    summary = record["token_summary"]
    # Today: 0 booked while the server bills the call.
    assert summary["estimated_tokens"] == summary["total_tokens"] > 0
    billed = server_total(server, 1)
    assert summary["total_tokens"] >= billed > 0
    warnings = [e for e in record["events"]
                if e["level"] == "warning" and (e.get("metadata") or {}).get("estimated")]
    assert len(warnings) == 1 and "booked its reservation" in warnings[0]["message"]
    ops = [op for op in summary["operations"] if op["tokens"].get("estimated_tokens")]
    assert ops and ops[0]["operation"] == "fixed_calls"


async def test_randomized_budgets_and_plans_never_book_less_than_was_billed(cut_env):
    server, tmp_path = cut_env
    server.options.latency_ms = 60
    rng = random.Random(21)
    runs = cancelled_runs = 0
    for i in range(24):
        server.reset()
        width = rng.randint(2, 4)
        max_tokens = {f"part_{k}": rng.randint(20, 3000) for k in range(width)}
        max_tokens["final"] = rng.randint(20, 600)
        server.options.output_tokens = rng.choice([None, rng.randint(5, 400)])
        grace = rng.choice([0.0, 10.0])
        budget = rng.randint(300, 6000)
        outcome, record = await run_once(tmp_path, max_tokens, budget, grace, f"sess_r{i:02d}")
        summary = record["token_summary"]
        billed = server_total(server, sent_calls(record))
        runs += 1
        assert summary["total_tokens"] <= budget
        assert summary["total_tokens"] >= billed, (i, summary, billed)
        if summary["estimated_tokens"] == 0:
            assert summary["total_tokens"] == billed, (i, summary, billed)
        else:
            cancelled_runs += 1
        assert outcome.exit_code in (0, 3), record.get("result", {}).get("error")
        await asyncio.sleep(0)
    assert runs == 24
    # Both cases were met: runs whose calls all finished (equal) and runs with a cut call.
    assert 0 < cancelled_runs < runs


# --------------------------------------------------------------------------- Ctrl-C / SIGTERM

LEAD = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"


def _interrupt_lead(cli: SigilCLI, server, signals: list[int]) -> dict:
    proc = subprocess.Popen(cli.argv("orchestrate", "--session", "sess_sig", LEAD), cwd=cli.cwd,
                            env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    # Once the first answer is back, the next call is on its way: stop the run then.
    while not [c for c in server.calls() if c.get("usage")] and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.3)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signals[0], out + err
    assert "Traceback" not in err
    return cli.session_json("sess_sig")


def _billed(server, booked_calls: int) -> int:
    deadline = time.monotonic() + 30
    served: list = []
    while time.monotonic() < deadline:
        served = [c for c in server.calls() if c["path"] == "/v1/messages" and c.get("usage")]
        if len(served) >= booked_calls:
            break
        time.sleep(0.05)
    return sum(sum(v or 0 for v in c["usage"].values()) for c in served)


def test_ctrl_c_lets_the_call_in_flight_finish_and_books_it(anthropic_server_process,
                                                           anthropic_cli):
    server = anthropic_server_process("--answers", str(LEAD_ANSWERS), "--latency-ms", "800",
                                      "--min-cache-tokens", "0")
    record = _interrupt_lead(anthropic_cli(server.url), server, [signal.SIGINT])
    assert record["status"] == "interrupted"
    summary = record["token_summary"]
    assert summary["estimated_tokens"] == 0
    # Every call the server answered (the one in flight at Ctrl-C included) is booked.
    assert summary["total_tokens"] == _billed(server, summary["llm_calls"]) > 0


def test_second_signal_cancels_the_call_and_books_its_reservation(anthropic_server_process,
                                                                  anthropic_cli):
    server = anthropic_server_process("--answers", str(LEAD_ANSWERS), "--latency-ms", "1500",
                                      "--min-cache-tokens", "0")
    record = _interrupt_lead(anthropic_cli(server.url), server, [signal.SIGTERM, signal.SIGTERM])
    assert record["status"] == "interrupted" and record["signal"] == "SIGTERM"
    summary = record["token_summary"]
    billed = _billed(server, summary["llm_calls"])
    assert summary["estimated_tokens"] > 0
    assert summary["total_tokens"] >= billed
