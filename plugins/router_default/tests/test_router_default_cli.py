"""End to end through the real `sigil` CLI (subprocesses, temp SIGIL_HOME and cwd)."""

from __future__ import annotations

import json

import yaml


def _events(session: dict) -> list[dict]:
    return session["events"]


def test_simple_query_skips_planning_and_contracts(rd_cli) -> None:
    proc = rd_cli("orchestrate", "--session", "sess_simple", "--format", "json",
                  "What is the capital of France?")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["result"]["intent"] == "simple_query"
    assert out["token_summary"]["llm_calls"] <= 2
    events = _events(rd_cli.session_json("sess_simple"))
    components = {e["component"] for e in events}
    assert "planner" not in components and "contracts" not in components
    route_done = next(e for e in events if e["operation"] == "route_request"
                      and e["message"].startswith("Completed"))
    assert route_done["metadata"]["source"] == "fast_path"
    assert route_done["metadata"]["tokens_used"] == 0 and route_done["metadata"]["reason"]
    assert "tokens_used" not in route_done or route_done["tokens_used"]["total_tokens"] == 0
    assert out["result"]["output"]  # the answer itself


def test_route_command_prints_the_decision(rd_cli) -> None:
    fast = rd_cli.json("route", "Create an agent that books dentist appointments")
    assert (fast["intent"], fast["source"], fast["tokens_used"], fast["llm_calls"]) == (
        "create_agent", "fast_path", 0, 0)
    slow = rd_cli.json("route", "lead qualifier")
    assert slow["source"] == "llm" and slow["llm_calls"] == 1 and slow["tokens_used"] > 0


def test_create_list_run_modify_an_agent(rd_cli) -> None:
    # 1. create through orchestrate
    proc = rd_cli("orchestrate", "--format", "json",
                  "Create an agent named lead_scout that qualifies inbound sales leads using BANT")
    assert proc.returncode == 0, proc.stderr
    created = json.loads(proc.stdout)["result"]
    assert created["intent"] == "create_agent"
    assert created["output"]["name"] == "lead_scout"
    path = rd_cli.agents_dir / "lead_scout.yaml"
    assert yaml.safe_load(path.read_text())["contract"] == "lead_qualification"

    # 2. it is listed next to the builtins
    listed = {a["name"]: a for a in rd_cli.json("agents", "list", "--json")}
    assert {"lead_qualifier", "researcher", "lead_scout"} <= set(listed)
    assert listed["lead_scout"]["source"] == "saved" and listed["lead_scout"]["version"] == 1
    text = rd_cli("agents", "list").stdout
    assert "lead_scout" in text and "v1" in text

    # 3. run a task with it: its contract is what validation checks
    proc = rd_cli("orchestrate", "--agent", "lead_scout", "--session", "sess_agent",
                  "--format", "json", "Qualify this lead: John Smith, CEO at Acme Corp")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)["result"]
    assert result["intent"] == "execute_task"
    assert result["validation"]["contract_name"] == "lead_qualification"
    assert result["validation"]["success"] is True

    # 4. modify it: a new version, the previous one kept
    proc = rd_cli("orchestrate", "--format", "json",
                  "Update the lead_scout agent to always ask about the decision timeline first")
    assert proc.returncode == 0, proc.stderr
    modified = json.loads(proc.stdout)["result"]["output"]
    assert modified["version"] == 2 and modified["previous_version"] == 1
    shown = rd_cli.json("agents", "show", "lead_scout", "--json")
    assert shown["version"] == 2
    assert shown["instructions"].endswith("Always ask about the decision timeline first.")
    assert shown["history"] == ["lead_scout.v1.yaml"]
    old = yaml.safe_load((rd_cli.agents_dir / ".history" / "lead_scout.v1.yaml").read_text())
    assert old["version"] == 1 and "timeline" not in old["instructions"]

    # 5. remove it: gone from the list, its file kept in the history
    proc = rd_cli("agents", "remove", "lead_scout")
    assert proc.returncode == 0, proc.stderr
    assert not path.exists()
    assert (rd_cli.agents_dir / ".history" / "lead_scout.v2.yaml").exists()
    assert "lead_scout" not in {a["name"] for a in rd_cli.json("agents", "list", "--json")}


def test_bad_agent_input_exits_2_and_writes_nothing(rd_cli) -> None:
    cases = [
        (("agents", "show", "nobody"), "unknown agent 'nobody'"),
        (("agents", "show", "../etc/passwd"), "invalid agent name"),
        (("agents", "remove", "../../x"), "invalid agent name"),
        (("agents", "remove", "researcher"), "cannot be removed"),
        (("orchestrate", "--agent", "nobody", "Qualify this lead"), "unknown agent"),
        (("orchestrate", "Create an agent named ../../etc/passwd that reads files"),
         "invalid agent name"),
        (("orchestrate", "Modify the ghost agent to be nicer"), "unknown agent 'ghost'"),
    ]
    for args, message in cases:
        proc = rd_cli(*args)
        assert proc.returncode == 2, (args, proc.returncode, proc.stdout, proc.stderr)
        assert message in proc.stderr + proc.stdout, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert not rd_cli.agents_dir.exists()


def test_broken_agent_file_is_an_error_and_left_alone(rd_cli) -> None:
    rd_cli.agents_dir.mkdir(parents=True)
    broken = rd_cli.agents_dir / "digest.yaml"
    content = "name: digest\ninstructions: [unclosed\n"
    broken.write_text(content)
    for args in (("agents", "show", "digest"),
                 ("orchestrate", "--agent", "digest", "Write the digest"),
                 ("orchestrate", "Update the digest agent to add a section on AI news")):
        proc = rd_cli(*args)
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        assert "digest.yaml" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert broken.read_text() == content
    # removing it is how the user gets rid of it
    proc = rd_cli("agents", "remove", "digest")
    assert proc.returncode == 0, proc.stderr
    assert (rd_cli.agents_dir / ".history" / "digest.broken.yaml").read_text() == content


def test_agents_list_shows_broken_files_as_broken_and_the_others(rd_cli) -> None:
    rd_cli.agents_dir.mkdir(parents=True)
    (rd_cli.agents_dir / "loop.yaml").symlink_to("loop.yaml")  # a symlink loop
    (rd_cli.agents_dir / "digest.yaml").write_text("name: digest\ninstructions: [unclosed\n")
    (rd_cli.agents_dir / "scout.yaml").write_text(
        "name: scout\ndescription: Finds new leads\ninstructions: Look for leads.\n")
    proc = rd_cli("agents", "list")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert "scout" in lines and "Finds new leads" in lines["scout"]
    assert "broken" in lines["loop"] and "broken" in lines["digest"], proc.stdout
    assert "loop.yaml" in proc.stderr and "digest.yaml" in proc.stderr
    rows = {r["name"]: r for r in rd_cli.json("agents", "list", "--json")}
    assert rows["loop"]["source"] == "broken" and "loop.yaml" in rows["loop"]["error"]
    assert rows["scout"]["source"] == "saved"


def test_read_only_commands_create_nothing(rd_cli) -> None:
    root = rd_cli.cwd.parent
    before = sorted(root.rglob("*"))
    for args in (("agents", "list"), ("agents", "show", "nobody"), ("sessions", "list"),
                 ("sessions", "show", "sess_nobody"), ("plugins",)):
        proc = rd_cli(*args)
        assert "Traceback" not in proc.stderr, (args, proc.stderr)
    assert sorted(root.rglob("*")) == before


def test_bad_router_config_is_named(rd_cli) -> None:
    (rd_cli.home / "config.yaml").write_text("router:\n  threshold: 3\n")
    proc = rd_cli("route", "What is the capital of France?")
    assert proc.returncode == 2
    assert "router.threshold" in proc.stderr and "Traceback" not in proc.stderr
