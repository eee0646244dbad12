"""Durable runs: a session that was interrupted, ran out of budget or was killed is resumed from
its journal, and no LLM call of a finished step is made again (issue 14, "Resume")."""

from __future__ import annotations

import json
import signal
import time

from core_cli import CLI, LEAD_TASK
from test_interrupts import SLOW, start, wait_for_handlers


def journal(sigil: CLI, session: str) -> list[dict]:
    path = sigil.sessions / f"{session}.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def finished_steps(events: list[dict], attempt: int | None = None) -> list[str]:
    return [e["metadata"]["step_name"] for e in events if e["operation"] == "execute_step"
            and (attempt is None or e.get("attempt", 1) == attempt)]


def wait_for_steps(sigil: CLI, session: str, proc, count: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        path = sigil.sessions / f"{session}.jsonl"
        if path.exists() and len(finished_steps(journal(sigil, session))) >= count:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError(f"{count} steps never finished")


def call_tokens(events: list[dict], attempt: int) -> int:
    """Tokens of the LLM calls one attempt made (reported, or estimated when cut short)."""
    total = 0
    for e in events:
        meta = e.get("metadata") or {}
        if e["operation"] == "llm_call" and e.get("attempt", 1) == attempt and (
                e["level"] == "debug" or meta.get("estimated")):
            total += meta["input_tokens"] + meta["output_tokens"] + (
                meta.get("cache_read_tokens") or 0) + (meta.get("cache_write_tokens") or 0)
    return total


def reasoning_steps(events: list[dict], attempt: int) -> set[str]:
    """Steps whose strategy ran (and called the model) in an attempt."""
    return {e["metadata"]["step_name"] for e in events
            if e["component"] == "reasoning" and e.get("attempt", 1) == attempt
            and e["message"].startswith("Starting") and "step_name" in (e.get("metadata") or {})}


def check_resumed(sigil: CLI, session: str, first_total: int, reused: list[str]) -> dict:
    record = json.loads((sigil.sessions / f"{session}.json").read_text())
    events = journal(sigil, session)
    assert record["status"] == "ok" and record["attempts"] == 2
    resume = [e for e in events if e["operation"] == "resume"]
    assert len(resume) == 1 and resume[0]["attempt"] == 2
    assert set(reused) <= set(resume[0]["metadata"]["reused"]["steps"])
    # No LLM call for a finished step, no second route or plan.
    assert not set(reused) & reasoning_steps(events, 2)
    assert not [e for e in events if e.get("attempt") == 2
                and e["operation"] in ("create_plan", "route_request")]
    # Every event of the new attempt carries its number; the .json holds both attempts.
    second = [e for e in events if e.get("attempt") == 2]
    assert second and all(e.get("attempt") == 2 for e in events[events.index(second[0]):])
    assert len(record["events"]) == len(events) == record["summary"]["total_events"]
    # The token summary covers the whole session: the first attempt plus the second.
    assert record["token_summary"]["total_tokens"] == first_total + call_tokens(events, 2)
    assert record["summary"]["total_tokens"] == record["token_summary"]["total_tokens"]
    assert record["result"]["output"]["score"] >= 0
    return record


def test_interrupted_after_two_steps_resumes_without_repeating_them(sigil):
    proc = start(sigil, "orchestrate", "--session", "sess_res_int", LEAD_TASK)
    wait_for_handlers(proc)
    # The two first steps run side by side; the last one waits for both.
    wait_for_steps(sigil, "sess_res_int", proc, 2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    first = json.loads((sigil.sessions / "sess_res_int.json").read_text())
    assert first["status"] == "interrupted"
    done = finished_steps(journal(sigil, "sess_res_int"))
    assert len(done) >= 2
    resumed = sigil("orchestrate", "--resume", "sess_res_int", env=SLOW)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    check_resumed(sigil, "sess_res_int", first["token_summary"]["total_tokens"], done)


def test_budget_exhausted_session_resumes_with_a_larger_budget(sigil):
    proc = sigil("orchestrate", "--session", "sess_res_budget", "--budget", "1700", LEAD_TASK)
    assert proc.returncode == 3, proc.stdout
    first = json.loads((sigil.sessions / "sess_res_budget.json").read_text())
    done = finished_steps(journal(sigil, "sess_res_budget"))
    assert done, "the budget should allow some steps"
    again = sigil("sessions", "resume", "sess_res_budget", "--budget", "1000")
    assert again.returncode == 2 and "larger" in again.stderr
    resumed = sigil("orchestrate", "--resume", "sess_res_budget", "--budget", "60000")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    record = check_resumed(sigil, "sess_res_budget", first["token_summary"]["total_tokens"], done)
    assert record["token_summary"]["budget"]["total"] == 60000


def test_killed_session_resumes_from_its_journal(sigil):
    proc = start(sigil, "orchestrate", "--session", "sess_res_kill", LEAD_TASK)
    wait_for_steps(sigil, "sess_res_kill", proc, 2)
    proc.kill()
    proc.wait()
    events = journal(sigil, "sess_res_kill")
    used = max(e["budget_snapshot"]["used"] for e in events)
    done = finished_steps(events)
    resumed = sigil("sessions", "resume", "sess_res_kill")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    check_resumed(sigil, "sess_res_kill", used, done)


def test_what_cannot_be_resumed_says_why(sigil):
    assert sigil("orchestrate", "--session", "sess_done", LEAD_TASK).returncode == 0
    done = sigil("orchestrate", "--resume", "sess_done")
    assert done.returncode == 2 and "finished successfully" in done.stderr
    missing = sigil("sessions", "resume", "sess_nope")
    assert missing.returncode == 2 and "no journal" in missing.stderr
    (sigil.sessions / "sess_foreign.jsonl").write_text('{"hello": 1}\n')
    foreign = sigil("sessions", "resume", "sess_foreign")
    assert foreign.returncode == 2 and "does not say what the task was" in foreign.stderr
    both = sigil("orchestrate", "--resume", "sess_done", LEAD_TASK)
    assert both.returncode == 2 and "not both" in both.stderr
    for proc in (done, missing, foreign, both):
        assert "Traceback" not in proc.stderr


class _CountingTool:
    input_schema = None

    def __init__(self, name: str, idempotent: bool = False) -> None:
        self.name = name
        self.idempotent = idempotent
        self.calls = 0

    async def call(self, arguments):
        self.calls += 1
        return {"n": self.calls}


async def test_tool_calls_of_an_earlier_attempt_are_reused_or_refused(tmp_path, monkeypatch):
    import pytest

    from sigil_core import hookimpl
    from sigil_core.builtin.offline import OfflineProvider
    from sigil_core.config import load_config
    from sigil_core.errors import ToolError
    from sigil_core.model import ExecutionContext, utcnow
    from sigil_core.plugins import PluginHost
    from sigil_core.resume import ToolCall, tool_key
    from sigil_core.run import Run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIGIL_HOME", str(tmp_path / "home"))
    write, lookup = _CountingTool("write_row"), _CountingTool("lookup", idempotent=True)

    class Tools:
        @hookimpl
        def sigil_register_tools(self, register, config):
            register(write)
            register(lookup)

    host = PluginHost(load_entry_points=False).load()
    host.register(Tools(), name="tools")
    ctx = ExecutionContext("sess_tools", "sess_tools", "t", 10_000, utcnow(), attempt=2)
    run = Run(ctx, load_config(), host, OfflineProvider())
    run.state["earlier_tool_calls"] = {
        tool_key("write_row", {"a": 1}): ToolCall("write_row", {"a": 1}, True, {"n": 41}),
        tool_key("write_row", {"a": 2}): ToolCall("write_row", {"a": 2}),  # no result known
        tool_key("lookup", {"q": "x"}): ToolCall("lookup", {"q": "x"}),
    }
    # A finished call's result comes from the journal: the tool is not called again.
    assert await run.call_tool("write_row", {"a": 1}) == {"n": 41}
    assert write.calls == 0
    # Started without a result, not idempotent: refused rather than repeated blindly.
    with pytest.raises(ToolError, match="not declared idempotent"):
        await run.call_tool("write_row", {"a": 2})
    assert write.calls == 0
    # Idempotent: run again, with a warning saying so.
    assert await run.call_tool("lookup", {"q": "x"}) == {"n": 1}
    assert any(e.metadata and e.metadata.get("rerun") for e in run.bus.events)
    # A new call is simply made, and its arguments and result go into the journal.
    assert await run.call_tool("write_row", {"a": 3}) == {"n": 1}
    done = [e for e in run.bus.events if e.operation == "write_row"
            and e.message.startswith("Completed")]
    assert done[-1].metadata["arguments"] == {"a": 3} and done[-1].metadata["result"] == {"n": 1}


def test_interrupted_twice_cut_calls_count_in_the_resumed_total(sigil):
    # Two signals: the call in flight is cancelled and booked at its reservation (estimated);
    # those tokens stay in the session's total across attempts.
    proc = start(sigil, "orchestrate", "--session", "sess_res_cut", LEAD_TASK,
                 env={"SIGIL_OFFLINE_LATENCY_MS": "1500"})
    wait_for_steps(sigil, "sess_res_cut", proc, 1)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    first = json.loads((sigil.sessions / "sess_res_cut.json").read_text())
    assert first["token_summary"]["estimated_tokens"] > 0
    done = finished_steps(journal(sigil, "sess_res_cut"))
    resumed = sigil("sessions", "resume", "sess_res_cut")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    record = check_resumed(sigil, "sess_res_cut", first["token_summary"]["total_tokens"], done)
    assert record["token_summary"]["estimated_tokens"] == first["token_summary"]["estimated_tokens"]


def test_journal_this_version_cannot_read_is_refused(sigil):
    proc = sigil("orchestrate", "--session", "sess_old", "--budget", "1700", LEAD_TASK)
    assert proc.returncode == 3
    path = sigil.sessions / "sess_old.jsonl"
    events = journal(sigil, "sess_old")
    for e in events:
        if e["operation"] == "create_plan" and "plan" in (e.get("metadata") or {}):
            e["metadata"]["plan"]["steps"] = "not a list of steps"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    refused = sigil("sessions", "resume", "sess_old", "--budget", "50000")
    assert refused.returncode == 2
    assert "cannot be read by this version" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_plan_whose_strategy_is_no_longer_installed_is_refused(sigil):
    proc = sigil("orchestrate", "--session", "sess_strat", "--budget", "1700", LEAD_TASK)
    assert proc.returncode == 3
    done = set(finished_steps(journal(sigil, "sess_strat")))
    # The plan was made while a plugin's "socratic" strategy was installed; it is gone now.
    events = journal(sigil, "sess_strat")
    for e in events:
        plan = (e.get("metadata") or {}).get("plan")
        if e["operation"] == "create_plan" and plan:
            for step in plan["steps"]:
                if step["name"] not in done:
                    step["reasoning_strategy"] = "socratic"
    (sigil.sessions / "sess_strat.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in events))
    refused = sigil("sessions", "resume", "sess_strat", "--budget", "50000")
    assert refused.returncode == 2
    assert "socratic, which is no longer installed" in refused.stderr


def test_a_session_still_running_is_not_resumed(sigil):
    # Slow calls: the run is still going while `sessions resume` starts, even under load.
    proc = start(sigil, "orchestrate", "--session", "sess_live", LEAD_TASK,
                 env={"SIGIL_OFFLINE_LATENCY_MS": "1500"})
    try:
        wait_for_steps(sigil, "sess_live", proc, 1)
        refused = sigil("sessions", "resume", "sess_live")
        assert refused.returncode == 2 and "still running" in refused.stderr
    finally:
        proc.kill()
        proc.wait()
