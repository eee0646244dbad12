"""End to end: `sigil orchestrate` as a subprocess, with the plugin installed and disabled.

The runs use the core and this plugin only: every other installed plugin is disabled, so what
is tested is this plugin against the core, whatever else happens to be installed.
"""

import json
from importlib import metadata

import pytest

from sigil_core.testing import SigilCLI

LEAD = "Qualify this lead: Jane Smith, VP of Sales at Acme Corp, interested in the enterprise plan"


@pytest.fixture
def tot_cli(tmp_path):
    others = sorted({ep.name for ep in metadata.entry_points(group="sigil")} - {"reasoning_tot"})
    cli = SigilCLI(tmp_path, env={"SIGIL_DISABLE_PLUGINS": ",".join(others)})

    def run(*args, disable_tot=False):
        env = ({"SIGIL_DISABLE_PLUGINS": ",".join([*others, "reasoning_tot"])} if disable_tot
               else None)
        proc = cli(*args, env=env)
        logs = sorted(cli.sessions.glob("*.jsonl"))
        events = [json.loads(line) for line in logs[-1].read_text().splitlines() if line] \
            if logs else []
        return proc, events

    run.home = cli.home
    return run


def test_complex_step_is_searched_with_tree_of_thoughts(tot_cli):
    proc, events = tot_cli("orchestrate", LEAD, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    start = [e for e in events if e["message"] == "Starting tree_of_thoughts"]
    done = [e for e in events if e["message"] == "Completed tree_of_thoughts"]
    assert len(start) == 1 and len(done) == 1
    assert done[0]["metadata"]["step_name"] == "assess_bant"
    # A complex step: one level of complete candidate answers (three, offline too) and a vote.
    assert done[0]["metadata"]["branches_explored"] >= 1
    assert done[0]["metadata"]["levels"] == 1 and len(done[0]["metadata"]["tree"]) == 3
    purposes = [e["metadata"]["purpose"] for e in events if e["operation"] == "llm_call"
                and e.get("parent_operation_id") == done[0]["operation_id"]]
    assert sorted(purposes) == ["tot_propose", "tot_vote"]
    assert done[0]["metadata"]["chosen_path"]
    assert 0 < done[0]["metadata"]["confidence"] <= 1
    assert done[0]["tokens_used"]["total_tokens"] > 0
    branches = [e for e in events if e["message"].startswith("Exploring branch")]
    assert len(branches) == done[0]["metadata"]["branches_explored"]
    branch_ids = {b["operation_id"] for b in branches}
    assert all(b["level"] == "debug" and b["operation"] == "tree_of_thoughts"
               and b["parent_operation_id"] in branch_ids | {start[0]["operation_id"]}
               for b in branches)
    assert branches[0]["parent_operation_id"] == start[0]["operation_id"]
    # The spec's order: started, branches, completed.
    ids = [e["id"] for e in events]
    assert ids.index(start[0]["id"]) < ids.index(branches[0]["id"]) < ids.index(done[0]["id"])
    data = json.loads(proc.stdout)
    result = data.get("result", data)
    assert result["success"] is True
    assert result["steps"]["assess_bant"]["strategy"] == "tree_of_thoughts"


def test_without_the_plugin_the_step_falls_back_down_the_chain(tot_cli):
    proc, events = tot_cli("orchestrate", LEAD, "--format", "json", disable_tot=True)
    assert proc.returncode == 0, proc.stderr
    assert not [e for e in events if e["operation"] == "tree_of_thoughts"
                and e["component"] == "reasoning" and e["message"].startswith("Starting")]
    data = json.loads(proc.stdout)
    result = data.get("result", data)
    assert result["success"] is True
    assert result["steps"]["assess_bant"]["strategy"] == "chain_of_thought"
    notes = [e for e in events if "tree_of_thoughts is not installed" in e["message"]]
    assert notes and notes[0]["metadata"]["step_name"] == "assess_bant"


def test_config_section_changes_the_search(tot_cli):
    (tot_cli.home / "config.yaml").write_text(
        "tree_of_thoughts:\n  depth: 3\n  steps:\n    assess_bant: {method_evaluate: value}\n")
    proc, events = tot_cli("orchestrate", LEAD)
    assert proc.returncode == 0, proc.stderr
    done = next(e for e in events if e["message"] == "Completed tree_of_thoughts")
    assert done["metadata"]["levels"] == 3
    assert done["metadata"]["tot_params"]["method_evaluate"] == "value"
    assert any(e["operation"] == "llm_call" and e["metadata"]["purpose"] == "tot_value"
               for e in events)


def test_branch_events_form_a_tree_through_parent_operation_id(tmp_path):
    """The monitor's view: only ids and parent ids rebuild the search tree under the step."""
    cli = SigilCLI(tmp_path, env={
        "SIGIL_DISABLE_PLUGINS": "memory_sqlite,router_default,tools_mcp,monitor_ws"})
    proc = cli("orchestrate", "--session", "tree",
               "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(x) for x in (cli.sessions / "tree.jsonl").read_text().splitlines()]
    tot_ops = {e["operation_id"] for e in events
               if e["operation"] == "tree_of_thoughts" and e["message"].startswith("Starting")}
    branches = [e for e in events if e["message"].startswith("Exploring branch")]
    assert branches and tot_ops
    ids = {e["operation_id"] for e in branches}
    for b in branches:
        # every branch hangs off another branch or directly off the strategy's operation
        assert b["parent_operation_id"] in ids | tot_ops
    roots = [b for b in branches if b["parent_operation_id"] in tot_ops]
    assert roots and len(roots) < len(branches) + 1
