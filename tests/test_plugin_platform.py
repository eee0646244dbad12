"""What the host does with plugins that are wrong or in each other's way: bad registered
objects, two plugins claiming one name, strict mode, one choice for all of a plugin's phases,
hook wrappers, the config handed to registration hooks, and failures recorded in the session."""

from __future__ import annotations

import json

import pytest
from core_cli import LEAD_TASK
from test_plugins import make_dist

BAD_STRATEGY = '''
from sigil_core import hookimpl

@hookimpl
def sigil_register_strategies(register):
    register(object())
'''

DEBATE = '''
from sigil_core import hookimpl
from sigil_core.model import ReasoningResult

class Debate:
    name = "debate"

    async def execute(self, run, step, context):
        return ReasoningResult(output="debated by {who}", confidence=0.5)

@hookimpl
def sigil_register_strategies(register):
    register(Debate())

@hookimpl
def sigil_register_agents(register):
    from sigil_core.model import Agent
    register(Agent(name="debater_{who}", description="d", instructions="i",
                   strategy_preferences=["debate"]))
'''


@pytest.fixture
def site(tmp_path, sigil):
    folder = tmp_path / "site"
    folder.mkdir()
    sigil.env["PYTHONPATH"] = str(folder)
    return folder


def warnings_in_session(sigil) -> list[dict]:
    return [e for e in sigil.session_jsonl() if e["operation"] == "plugins"]


def test_a_registered_object_without_the_protocol_is_dropped_with_a_warning(sigil, site):
    make_dist(site, "sigil-bad-strategy", "sigil_bad_strategy", BAD_STRATEGY, "bad_strategy")
    proc = sigil("orchestrate", LEAD_TASK)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if "bad_strategy" in ln)
    assert "sigil_register_strategies" in line and "lacks name, execute" in line
    assert "Traceback" not in proc.stderr
    [event] = warnings_in_session(sigil)
    assert event["level"] == "warning" and event["metadata"] == {
        "plugin": "bad_strategy", "hook": "sigil_register_strategies"}
    listing = sigil("plugins", "--check")
    assert "bad_strategy: plugin 'bad_strategy' registered a bad strategy" in listing.stdout
    shown = sigil("plugins", "show", "bad_strategy")
    assert "problem: plugin 'bad_strategy' registered a bad strategy" in shown.stdout


def test_show_lists_what_a_plugin_registered_and_its_hooks(sigil, site):
    make_dist(site, "sigil-debate-a", "sigil_debate_a", DEBATE.replace("{who}", "a"), "debate_a")
    data = json.loads(sigil("plugins", "show", "debate_a", "--json").stdout)
    assert data["registered"] == {"strategies": ["debate"], "agents": ["debater_a"]}
    assert data["hooks"] == ["sigil_register_agents", "sigil_register_strategies"]
    text = sigil("plugins", "show", "builtin.reasoning").stdout
    assert "strategies: chain_of_thought, direct" in text and "sigil_reason" in text
    unknown = sigil("plugins", "show", "nope")
    assert unknown.returncode == 2 and "no plugin named 'nope'" in unknown.stderr


def test_two_plugins_registering_one_name_warn_and_an_explicit_choice_wins(sigil, site):
    make_dist(site, "sigil-debate-a", "sigil_debate_a", DEBATE.replace("{who}", "a"), "debate_a")
    make_dist(site, "sigil-debate-b", "sigil_debate_b", DEBATE.replace("{who}", "b"), "debate_b")
    proc = sigil("orchestrate", "--agent", "debater_a", "--format", "json", LEAD_TASK)
    assert proc.returncode == 0, proc.stderr
    warning = next(ln for ln in proc.stderr.splitlines() if "both register" in ln)
    assert "'debate_a'" in warning and "'debate_b'" in warning
    assert "using 'debate_a'" in warning and "--use strategy.debate=PLUGIN" in warning
    steps = json.loads(proc.stdout)["result"]["steps"]
    assert {s["output"] for s in steps.values()} <= {"debated by a"} | {
        s["output"] for s in steps.values() if s["strategy"] != "debate"}
    assert any(s["output"] == "debated by a" for s in steps.values())
    assert any("both register" in e["message"] for e in warnings_in_session(sigil))

    chosen = sigil("orchestrate", "--agent", "debater_a", "--format", "json",
                   "--use", "strategy.debate=debate_b", LEAD_TASK)
    assert chosen.returncode == 0, chosen.stderr
    assert "both register" not in chosen.stderr
    outputs = {s["output"] for s in json.loads(chosen.stdout)["result"]["steps"].values()}
    assert "debated by b" in outputs and "debated by a" not in outputs


def test_strict_mode_says_which_plugin_and_distribution_failed_in_one_line(sigil, site):
    make_dist(site, "sigil-broken", "sigil_broken", "raise RuntimeError('boom at import')\n",
              "broken")
    for args in (["plugins"], ["orchestrate", LEAD_TASK], ["--help"]):
        proc = sigil(*args, env={"SIGIL_STRICT_PLUGINS": "1"})
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert "plugin 'broken'" in lines[0] and "sigil-broken 0.3.1" in lines[0]
        assert "boom at import" in lines[0]


MEMORY = '''
from sigil_core import hookimpl
from sigil_core.model import ExtractionResult, MemoryContext, MemoryItem

@hookimpl
def sigil_retrieve(run, task):
    run.annotate(backend="{name}")
    return MemoryContext(items=[MemoryItem("remembered by {name}")])

@hookimpl
def sigil_extract(run, task):
    run.annotate(backend="{name}")
    return ExtractionResult()
'''


def test_one_choice_names_a_plugin_for_every_phase_it_implements(sigil, site):
    for name in ("mem_a", "mem_b"):
        make_dist(site, f"sigil-{name}", f"sigil_{name}", MEMORY.replace("{name}", name), name)
    ambiguous = sigil("orchestrate", LEAD_TASK)
    assert ambiguous.returncode == 2
    assert "--use NAME" in ambiguous.stderr and "memory: NAME" in ambiguous.stderr
    for choice in (["--use", "mem_b"], ["--use", "memory=mem_b"]):
        proc = sigil("orchestrate", *choice, LEAD_TASK)
        assert proc.returncode == 0, (choice, proc.stderr)
        done = [e for e in sigil.session_jsonl() if e["component"] == "memory"
                and e["message"].startswith("Completed")]
        assert {e["metadata"]["backend"] for e in done} == {"mem_b"}
        assert {e["operation"] for e in done} == {"retrieve_context", "extract_memories"}
        for f in sigil.sessions.iterdir():
            f.unlink()
    (sigil.home / "config.yaml").write_text("plugins:\n  use: {memory: mem_a}\n")
    assert sigil("orchestrate", LEAD_TASK).returncode == 0
    unknown = sigil("orchestrate", "--use", "nope", LEAD_TASK)
    assert unknown.returncode == 2 and "no active plugin named 'nope'" in unknown.stderr


WRAPPER = '''
from sigil_core import hookimpl

@hookimpl(wrapper=True)
def sigil_route(run, task):
    decision = yield
    run.annotate(wrapped=True)
    decision.rationale = "seen by the wrapper: " + decision.rationale
    return decision
'''

OLD_WRAPPER = '''
from sigil_core import hookimpl

@hookimpl(hookwrapper=True)
def sigil_route(run, task):
    yield
'''


def test_a_wrapper_sees_and_may_change_the_phase_result(sigil, site):
    make_dist(site, "sigil-wrapper", "sigil_wrapper", WRAPPER, "wrapper")
    proc = sigil("route", "What is 2+2?")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rationale"].startswith("seen by the wrapper: ")
    # A wrapper does not count as a second implementation of the phase.
    assert sigil("orchestrate", LEAD_TASK).returncode == 0


def test_an_old_style_hookwrapper_is_refused_at_load_with_the_fix(sigil, site):
    make_dist(site, "sigil-old-wrapper", "sigil_old_wrapper", OLD_WRAPPER, "old_wrapper")
    row = next(r for r in json.loads(sigil("plugins", "--json").stdout)
               if r["name"] == "old_wrapper")
    assert row["status"] == "failed"
    assert "hookwrapper=True is not supported; use @hookimpl(wrapper=True)" in row["error"]


CONFIGURED_TOOL = '''
from sigil_core import hookimpl

class Echo:
    description = "echo"
    input_schema = {"type": "object", "properties": {}}

    def __init__(self, name):
        self.name = name

    async def call(self, arguments):
        return self.name

@hookimpl
def sigil_register_tools(register, config):
    register(Echo(config.section("echo_tool").get("name", "echo")))
'''

BROKEN_SINK = '''
from sigil_core import hookimpl

class Broken:
    name = "broken_sink"

    def open(self, run):
        raise RuntimeError("no place to write")

    def write(self, events):
        pass

    def close(self, run, record):
        pass

@hookimpl
def sigil_register_log_sinks(register):
    register(Broken())
'''


def test_registration_hooks_get_the_config(sigil, site):
    make_dist(site, "sigil-echo", "sigil_echo", CONFIGURED_TOOL, "echo_tool")
    (sigil.home / "config.yaml").write_text("echo_tool:\n  name: shout\n")
    shown = json.loads(sigil("plugins", "show", "echo_tool", "--json").stdout)
    assert shown["registered"] == {"tools": ["shout"]}


def test_a_sink_that_fails_to_start_is_recorded_and_the_run_goes_on(sigil, site):
    make_dist(site, "sigil-broken-sink", "sigil_broken_sink", BROKEN_SINK, "broken_sink")
    proc = sigil("orchestrate", LEAD_TASK)
    assert proc.returncode == 0, proc.stderr
    assert "log sink 'broken_sink' of plugin 'broken_sink' failed to start" in proc.stderr
    [event] = warnings_in_session(sigil)
    assert "no place to write" in event["message"] and event["metadata"]["hook"] == "open"
