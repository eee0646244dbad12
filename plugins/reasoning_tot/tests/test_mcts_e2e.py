"""End to end: ``sigil orchestrate`` runs ``mcts`` for a critical plan step.

The plan comes from the Anthropic provider's local test server (the real SDK over HTTP), whose
scripted plan marks ``assess_bant`` critical; without the ``reasoning_mcts`` entry point the
step falls back down the chain, as before MCTS was installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

server_mod = pytest.importorskip("sigil_provider_anthropic.testing.server",
                                 reason="the Anthropic provider plugin (its test server)")

TASK = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"


@pytest.fixture
def critical_answers(tmp_path: Path) -> Path:
    from sigil_core.testing import LEAD_ANSWERS

    answers = json.loads(LEAD_ANSWERS.read_text())
    for step in answers["PlanAnswer"]["steps"]:
        if step["name"] == "assess_bant":
            step["complexity"] = "critical"
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(answers))
    return path


def orchestrate(tmp_path: Path, url: str, disabled: set[str]) -> tuple[int, list[dict], str]:
    keep = {"anthropic", "reasoning_tot", "reasoning_mcts"} - disabled
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "SIGIL_"))}
    # No resident worker left behind for this home (a run in its own process starts one).
    env.update(SIGIL_HOME=str(tmp_path / "home"), SIGIL_WORKER_AUTO_START="0",
               ANTHROPIC_API_KEY="sk-ant-test-key",
               ANTHROPIC_BASE_URL=url, SIGIL_DISABLE_PLUGINS=",".join(
                   sorted({ep.name for ep in entry_points(group="sigil")} - keep)))
    proc = subprocess.run([sys.executable, "-m", "sigil_core", "orchestrate", "--session", "crit",
                           TASK], check=False, cwd=tmp_path, env=env, capture_output=True,
                          text=True,
                          timeout=180)
    lines = (tmp_path / "outputs" / "sessions" / "crit.jsonl").read_text().splitlines()
    return proc.returncode, [json.loads(x) for x in lines], proc.stderr


def strategy_of(events: list[dict], step: str) -> str:
    started = [e for e in events if e["message"].startswith("Starting ")
               and (e.get("metadata") or {}).get("step_name") == step
               and e["component"] == "reasoning"]
    return started[0]["operation"]


def test_critical_step_runs_mcts_and_events_draw_the_tree(tmp_path, critical_answers):
    server = server_mod.MessagesServer(server_mod.ServerOptions(
        answers=json.loads(critical_answers.read_text()))).start()
    try:
        code, events, err = orchestrate(tmp_path, server.url, set())
    finally:
        server.stop()
    assert code == 0, err
    assert strategy_of(events, "assess_bant") == "mcts"
    assert strategy_of(events, "research_lead") == "chain_of_thought"
    done = next(e for e in events if e["message"] == "Completed mcts")
    assert done["metadata"]["simulations"] >= 1
    expansions = [e for e in events if e["message"].startswith("Expanding node")]
    sims = [e for e in events if e["message"].startswith("Simulation ")]
    assert expansions and sims
    ops = {e["operation_id"] for e in expansions}
    assert all(e["parent_operation_id"] in ops | {done["operation_id"]} for e in expansions)
    assert all({"node_id", "visits", "value"} <= set(p) for s in sims
               for p in s["metadata"]["path"])
    # Its LLM calls are booked to the mcts operation, inside the budget.
    calls = [e for e in events if e["operation"] == "llm_call"
             and e.get("parent_operation_id") == done["operation_id"]]
    keys = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    assert calls and sum(sum(e["metadata"][k] for k in keys) for e in calls) \
        == done["tokens_used"]["total_tokens"]


def test_without_the_mcts_entry_point_the_step_falls_back(tmp_path, critical_answers):
    server = server_mod.MessagesServer(server_mod.ServerOptions(
        answers=json.loads(critical_answers.read_text()))).start()
    try:
        code, events, err = orchestrate(tmp_path, server.url, {"reasoning_mcts"})
    finally:
        server.stop()
    assert code == 0, err
    assert strategy_of(events, "assess_bant") == "tree_of_thoughts"
    assert not [e for e in events if e["operation"] == "mcts"]
