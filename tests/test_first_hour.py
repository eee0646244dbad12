"""What a new user meets in the first hour, offline, through the real CLI (issue 12).

The tool questions need the tools_mcp plugin (tools, react) and router_default (the
simple-answer path); tox installs every plugin, a bare core skips them.
"""

from __future__ import annotations

import json
import re

import pytest
from core_cli import LEAD_TASK


def _result(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def with_tools():
    pytest.importorskip("sigil_tools_mcp", reason="needs the tools_mcp plugin")
    pytest.importorskip("sigil_router_default", reason="needs the router_default plugin")


def test_arithmetic_question_is_answered_with_the_calculator(sigil, with_tools):
    out = _result(sigil("orchestrate", "What is 12 * 37?", "--format", "json"))
    assert "444" in out["result"]["output"]
    assert "[offline placeholder]" not in out["result"]["output"]
    tools = [e for e in sigil.session_jsonl() if e["component"] == "tools"]
    assert tools and tools[-1]["operation"] == "calculator"


def test_time_question_is_answered_with_the_clock(sigil, with_tools):
    out = _result(sigil("orchestrate", "What time is it in Tokyo?", "--format", "json"))
    answer = out["result"]["output"]
    assert "Asia/Tokyo" in answer and re.search(r"\b\d{2}:\d{2}:\d{2}\b", answer), answer


def test_a_calculation_task_states_its_result_in_the_final_answer(sigil, with_tools):
    proc = sigil("orchestrate", "Calculate (15 * 4) + 2^10")
    assert proc.returncode == 0, proc.stderr
    answer = proc.stdout.split("Result:\n", 1)[1].split("\nTokens:", 1)[0]
    assert "1084" in answer and "Tool results:" not in answer


@pytest.mark.parametrize("lead", [
    "John Smith, CEO at Acme Corp, wants the enterprise plan",
    "Qualify this lead: Maria Garcia, VP of Operations at Globex, asked about pricing for Q3",
    "a guy from some startup pinged us on the website chat",
])
def test_lead_qualifier_meets_its_contract_whatever_the_wording(sigil, lead):
    proc = sigil("orchestrate", "--agent", "lead_qualifier", lead)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contract lead_qualification: passed (offline placeholders)" in proc.stdout
    validated = [e for e in sigil.session_jsonl()
                 if e["operation"] == "validate_output" and e["message"].startswith("Completed")]
    assert validated[-1]["metadata"]["validation_passed"] is True
    assert "bant_assessment" in validated[-1]["metadata"]["offline_placeholders"]


def test_placeholder_research_is_flagged_as_such(sigil):
    out = _result(sigil("orchestrate", "--agent", "researcher", "Research the AI agents market",
                        "--format", "json"))
    validation = out["result"]["validation"]
    assert validation["success"] and "sources" in validation["placeholders"]
    assert all(s.startswith("[offline placeholder]") for s in out["result"]["output"]["sources"])
    notes = [e for e in sigil.session_jsonl() if e["message"].startswith(
        "Contract checked on offline placeholders")]
    assert notes and "sources" in notes[0]["metadata"]["offline_placeholders"]


@pytest.mark.parametrize("greeting", ["hi", "Hello there!", "thanks"])
def test_a_greeting_takes_the_simple_answer_path(sigil, greeting):
    pytest.importorskip("sigil_router_default", reason="needs the router_default plugin")
    out = _result(sigil("orchestrate", greeting, "--format", "json"))
    assert out["result"]["intent"] == "simple_query"
    assert out["result"].get("plan") is None
    assert out["token_summary"]["llm_calls"] <= 1


# --------------------------------------------------------------------------- the command line


def test_dry_run_is_a_short_table_and_json_on_request(sigil):
    proc = sigil("orchestrate", "--dry-run", LEAD_TASK)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) <= 15 and not proc.stdout.lstrip().startswith("{")
    header = next(line for line in lines if line.startswith("#"))
    assert header.split() == ["#", "step", "depends", "on", "strategy", "est.", "tokens"]
    bant = next(line for line in lines if " assess_bant " in line)
    assert bant.rstrip().endswith("8,000")
    final = next(line for line in lines if " generate_recommendation " in line)
    assert "research_lead, assess_bant" in final
    assert "contract: lead_qualification" in proc.stdout
    data = _result(sigil("orchestrate", "--dry-run", "--format", "json", LEAD_TASK))
    assert data["result"]["output"]["path"] == "plan"


def test_dry_run_shows_the_direct_path_for_what_the_router_answers(sigil):
    pytest.importorskip("sigil_router_default", reason="needs the router_default plugin")
    proc = sigil("orchestrate", "--dry-run", "hi")
    assert proc.returncode == 0, proc.stderr
    assert "direct_answer handler: no plan" in proc.stdout and "step" not in proc.stdout
    assert "0 LLM calls" in proc.stdout


@pytest.mark.parametrize("args", [
    ("--budget", "0", "hi"), ("--budget", "x", "hi"), ("--agent", "nobody", "hi"), ("",),
    ("--session", "../x", "hi"),
])
def test_format_json_keeps_stdout_json_for_errors(sigil, args):
    proc = sigil("orchestrate", "--format", "json", *args)
    assert proc.returncode == 2
    error = json.loads(proc.stdout)["error"]
    assert error["exit_code"] == 2 and error["message"]
    assert "Error:" in proc.stderr and "Traceback" not in proc.stderr


def test_outside_a_terminal_stderr_has_only_warnings_unless_verbose(sigil):
    quiet = sigil("orchestrate", "Write a haiku about tea")
    assert quiet.returncode == 0 and " INFO " not in quiet.stderr, quiet.stderr
    loud = sigil("orchestrate", "-v", "Write a haiku about tea")
    assert " INFO " in loud.stderr


def test_one_llm_call_is_singular(sigil):
    pytest.importorskip("sigil_router_default", reason="needs the router_default plugin")
    proc = sigil("orchestrate", "hi")
    assert ", 1 LLM call, " in proc.stdout and "1 LLM calls" not in proc.stdout


def test_sessions_list_says_where_it_looked_and_how_to_look_elsewhere(sigil, tmp_path):
    long_task = "Write " + "a very long request about tea " * 8
    assert sigil("orchestrate", "--session", "sess_first_of_two_with_a_long_id", long_task
                 ).returncode == 0
    empty = sigil("sessions", "list", env={"SIGIL_OUTPUTS_DIR": str(tmp_path / "none")})
    assert str(tmp_path / "none" / "sessions") in empty.stdout
    assert "--outputs DIR" in empty.stdout and "SIGIL_OUTPUTS_DIR" in empty.stdout
    other = tmp_path / "elsewhere"
    other.mkdir()
    import subprocess
    import sys

    listing = subprocess.run([sys.executable, "-m", "sigil_core", "sessions", "list", "--outputs",
                              str(sigil.cwd / "outputs")], cwd=other, env=sigil.env,
                             capture_output=True, text=True, timeout=60, check=False)
    row = next(line for line in listing.stdout.splitlines() if "sess_first_of_two" in line)
    assert "sess_first_of_two_with_a_long_id" in row and row.rstrip().endswith("…")
    assert row.rstrip()[:-1].split()[-1] in long_task.split()  # cut between words
    rows = json.loads(subprocess.run(
        [sys.executable, "-m", "sigil_core", "sessions", "list", "--json"], cwd=sigil.cwd,
        env=sigil.env, capture_output=True, text=True, timeout=60, check=False).stdout)
    assert rows[0]["session_id"] == "sess_first_of_two_with_a_long_id"


def _commands(group, prefix=()):
    import click

    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


def test_help_texts_speak_to_users():
    """No RST markup, no talk of "the spec" (a user has none), every option explained."""
    import click

    from sigil_core.cli import cli

    for path, cmd in _commands(cli):
        with click.Context(cmd, info_name=path[-1]) as ctx:
            text = cmd.get_help(ctx)
        assert "``" not in text, path
        assert "the spec" not in text.lower() and "spec's" not in text.lower(), path
        for param in cmd.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, (path, param.opts)


def test_a_named_provider_without_its_key_says_which_variable_to_set(sigil):
    pytest.importorskip("sigil_provider_anthropic", reason="needs the provider_anthropic plugin")
    proc = sigil("orchestrate", "hi", env={"SIGIL_PROVIDER": "anthropic"})
    assert proc.returncode == 2
    assert "ANTHROPIC_API_KEY" in proc.stderr and "Traceback" not in proc.stderr


def test_a_failed_run_in_json_carries_the_error_at_the_top(sigil):
    proc = sigil("orchestrate", "--format", "json", "--budget", "300",
                 "Research the AI agents market and write a report")
    assert proc.returncode == 3
    data = json.loads(proc.stdout)
    assert data["error"]["code"] == "TOKEN_001" and data["error"]["exit_code"] == 3
