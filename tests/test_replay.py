"""Record and replay (issue 14): cassettes next to sessions, `sigil replay`, and the pytest
fixture users put their agents under regression tests with."""

from __future__ import annotations

import json
import shutil

import pytest
from core_cli import CLI, LEAD_TASK

from sigil_core.testing import sigil_replay  # noqa: F401 - the fixture under test

AGENT = """name: lead_bot
description: Qualifies inbound sales leads
instructions: Score the lead with BANT and recommend one next action.
contract: lead_qualification
"""


def recording(sigil: CLI) -> dict[str, str]:
    config = sigil.home / "config.yaml"
    config.write_text("llm:\n  cassette: always\n")
    (sigil.home / "agents").mkdir(exist_ok=True)
    (sigil.home / "agents" / "lead_bot.yaml").write_text(AGENT)
    return {"SIGIL_CONFIG": str(config), "SECRET_API_TOKEN": "tok-very-secret-value"}


def test_offline_runs_are_not_recorded_by_default(sigil):
    assert sigil("orchestrate", "--session", "sess_plain", LEAD_TASK).returncode == 0
    assert not list(sigil.sessions.glob("*.cassette.jsonl"))
    missing = sigil("replay", "sess_plain")
    assert missing.returncode == 2 and "not recorded" in missing.stderr


def test_replay_gives_the_same_route_plan_steps_contract_and_output(sigil):
    env = recording(sigil)
    first = sigil("orchestrate", "--agent", "lead_bot", "--session", "sess_rec", LEAD_TASK,
                  env=env)
    assert first.returncode == 0, first.stderr
    cassette = (sigil.sessions / "sess_rec.cassette.jsonl").read_text()
    lines = [json.loads(x) for x in cassette.splitlines()]
    assert lines[0]["kind"] == "header" and lines[0]["task"] == LEAD_TASK
    llm_calls = [x for x in lines if x["kind"] == "llm"]
    original = json.loads((sigil.sessions / "sess_rec.json").read_text())
    assert len(llm_calls) == original["token_summary"]["llm_calls"]
    assert "tok-very-secret-value" not in cassette
    replayed = sigil("replay", "sess_rec", "--strict", env=env)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "identical route, plan, 3 step outputs, contract result and final output" in \
        replayed.stdout
    copy = next(p for p in sigil.sessions.glob("replay_sess_rec_*.json"))
    again = json.loads(copy.read_text())
    assert again["result"]["output"] == original["result"]["output"]
    assert again["result"]["validation"] == original["result"]["validation"]
    # The same calls with the same recorded usage (a replay skips memory extraction).
    phases = {k: v for k, v in original["token_summary"]["by_phase"].items() if k != "extract"}
    assert again["token_summary"]["by_phase"] == phases
    # Nothing of a replay is recorded, and it writes no memories.
    assert not list(sigil.sessions.glob("replay_*.cassette.jsonl"))
    extract = [e for e in again["events"] if e["operation"] == "extract_memories"]
    assert extract and "Replay" in extract[0]["message"]


def test_strict_replay_after_a_prompt_change_names_the_request(sigil):
    env = recording(sigil)
    assert sigil("orchestrate", "--agent", "lead_bot", "--session", "sess_edit", LEAD_TASK,
                 env=env).returncode == 0
    agent = sigil.home / "agents" / "lead_bot.yaml"
    agent.write_text(AGENT.replace("one next action", "two next actions"))
    strict = sigil("replay", "sess_edit", "--strict", env=env)
    assert strict.returncode == 1
    assert "no recorded answer for the" in strict.stderr
    assert "+" in strict.stderr and "two next actions" in strict.stderr
    assert "Traceback" not in strict.stderr


def test_pytest_fixture_replays_a_committed_cassette(sigil, sigil_replay, tmp_path):  # noqa: F811
    env = recording(sigil)
    assert sigil("orchestrate", "--session", "sess_fix", LEAD_TASK, env=env).returncode == 0
    original = json.loads((sigil.sessions / "sess_fix.json").read_text())
    committed = tmp_path / "lead.cassette.jsonl"
    shutil.copy(sigil.sessions / "sess_fix.cassette.jsonl", committed)
    done = sigil_replay(committed)
    assert done.mismatches == []
    assert done.outcome.exit_code == 0
    assert done.result.output == original["result"]["output"]
    # A cassette that does not match the run fails the test with the difference.
    lines = committed.read_text().splitlines()
    edited = [json.loads(x) for x in lines]
    for entry in edited:
        if entry["kind"] == "llm" and entry["purpose"] == "plan":
            entry["fingerprint"] = "0" * 32
    committed.write_text("\n".join(json.dumps(x) for x in edited) + "\n")
    with pytest.raises(pytest.fail.Exception, match="no recorded answer for the planner"):
        sigil_replay(committed)


def test_a_record_a_power_loss_emptied_leaves_the_session_readable_from_its_journal(sigil):
    """The session record is renamed into place but not forced to disk (the journal, the
    session's checkpoint, is not either): after a power loss it may be empty. Every reader
    then goes by the journal, and none fails with a traceback."""
    env = recording(sigil)
    assert sigil("orchestrate", "--session", "sess_lost", LEAD_TASK, env=env).returncode == 0
    (sigil.sessions / "sess_lost.json").write_text("")
    listed = sigil("sessions", "list")
    assert listed.returncode == 0 and "sess_lost" in listed.stdout
    shown = sigil("sessions", "show", "sess_lost")
    assert shown.returncode == 0 and "extract_memories" in shown.stdout, shown.stderr
    replayed = sigil("replay", "sess_lost", env=env)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "unreadable .json record" in replayed.stdout
    assert "Traceback" not in replayed.stderr
