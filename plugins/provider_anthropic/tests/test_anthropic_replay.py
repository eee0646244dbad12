"""A run against the Messages-API test server is recorded, then replayed with the server stopped:
same final output, step outputs and contract result; a changed prompt fails `--strict` naming
the request (issue 14, "Record and replay")."""

from __future__ import annotations

import json

from sigil_core.testing import LEAD_ANSWERS

TASK = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"
AGENT = """name: lead_bot
description: Qualifies inbound sales leads
instructions: Score the lead with BANT and recommend one next action.
contract: lead_qualification
"""


def test_recorded_run_replays_offline_and_a_prompt_change_fails_strict(
        anthropic_server_process, anthropic_cli):
    server = anthropic_server_process("--answers", str(LEAD_ANSWERS), "--output-tokens", "120",
                                      "--min-cache-tokens", "0")
    cli = anthropic_cli(server.url)
    agents = cli.home / "agents"
    agents.mkdir(parents=True)
    (agents / "lead_bot.yaml").write_text(AGENT)
    first = cli("orchestrate", "--agent", "lead_bot", "--session", "sess_rec", TASK)
    assert first.returncode == 0, first.stderr
    sessions = cli.sessions
    cassette = (sessions / "sess_rec.cassette.jsonl").read_text()
    assert "SECRET" not in cassette  # the API key is never recorded
    served = [c for c in server.calls() if c["path"] == "/v1/messages" and c.get("usage")]
    entries = [json.loads(x) for x in cassette.splitlines()]
    assert len([x for x in entries if x["kind"] == "llm"]) == len(served)
    original = json.loads((sessions / "sess_rec.json").read_text())
    server.stop()  # no network from here on

    replayed = cli("replay", "sess_rec", "--strict")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "identical route, plan" in replayed.stdout
    copy = json.loads(next(sessions.glob("replay_sess_rec_*.json")).read_text())
    assert copy["result"]["output"] == original["result"]["output"]
    assert {k: v["output"] for k, v in copy["result"]["steps"].items()} == {
        k: v["output"] for k, v in original["result"]["steps"].items()}
    assert copy["result"]["validation"] == original["result"]["validation"]
    assert copy["result"]["provider"] == "replay"

    (agents / "lead_bot.yaml").write_text(AGENT.replace("one next action", "two next actions"))
    strict = cli("replay", "sess_rec", "--strict")
    assert strict.returncode == 1
    assert "no recorded answer for the" in strict.stderr
    assert "two next actions" in strict.stderr and "one next action" in strict.stderr
    assert "Traceback" not in strict.stderr
