"""Plugins found through real entry points: replacing a builtin, failing, strict mode, disabling."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from core_cli import LEAD_TASK

PLANNER = '''
from sigil_core import hookimpl
from sigil_core.model import Plan, PlanStep

@hookimpl
def sigil_plan(run, task):
    return Plan(goal=task, steps=[
        PlanStep("think_hard", "Think about the lead", complexity="simple"),
        PlanStep("format_output", "Write it up", complexity="simple",
                 dependencies=["think_hard"], needs_contract=True),
    ])
'''


def make_dist(site: Path, dist: str, module: str, source: str, ep_name: str) -> None:
    """A minimal installed distribution: a module plus dist-info with a `sigil` entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text(f"[sigil]\n{ep_name} = {module}\n")


@pytest.fixture
def site(tmp_path: Path, sigil) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    sigil.env["PYTHONPATH"] = str(folder)
    return folder


def test_entry_point_plugin_replaces_the_builtin_planner(sigil, site):
    make_dist(site, "sigil-test-planner", "sigil_test_planner", PLANNER, "test_planner")
    listing = json.loads(sigil("plugins", "--json").stdout)
    row = next(r for r in listing if r["name"] == "test_planner")
    assert row == {"name": "test_planner", "distribution": "sigil-test-planner",
                   "version": "0.3.1", "status": "active", "hooks": ["sigil_plan"],
                   "error": None, "builtin": False, "registered": {}, "problems": [],
                   "note": None}
    proc = sigil("orchestrate", "--format", "json", LEAD_TASK)
    assert proc.returncode == 0, proc.stderr
    steps = [s["name"] for s in json.loads(proc.stdout)["result"]["plan"]["steps"]]
    assert steps == ["think_hard", "format_output"]


def test_plugin_failing_on_import_is_listed_and_the_run_goes_on(sigil, site):
    make_dist(site, "sigil-broken", "sigil_broken", "raise RuntimeError('boom at import')\n",
              "broken")
    listing = sigil("plugins")
    assert listing.returncode == 0
    line = next(ln for ln in listing.stdout.splitlines() if ln.startswith("broken"))
    assert "failed" in line and "boom at import" in line
    proc = sigil("orchestrate", LEAD_TASK)
    assert proc.returncode == 0
    assert "plugin 'broken'" in proc.stderr and "skipped" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_strict_mode_reraises_the_plugin_error(sigil, site):
    make_dist(site, "sigil-broken", "sigil_broken", "raise RuntimeError('boom at import')\n",
              "broken")
    proc = sigil("plugins", env={"SIGIL_STRICT_PLUGINS": "1"})
    assert proc.returncode != 0
    assert "boom at import" in proc.stderr


def test_plugins_say_what_state_they_are_in(sigil, site):
    make_dist(site, "sigil-quiet", "sigil_quiet", '''
from sigil_core import hookimpl

@hookimpl
def sigil_plugin_status(sections):
    mode = (sections.get("quiet") or {}).get("mode")
    return f"sending to {mode}" if mode else "idle: nothing configured"
''', "quiet")
    make_dist(site, "sigil-moody", "sigil_moody", '''
from sigil_core import hookimpl

@hookimpl
def sigil_plugin_status(sections):
    raise KeyError("mood")
''', "moody")
    proc = sigil("plugins")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert "active (idle: nothing configured)" in rows["quiet"]
    assert "active (status unknown: KeyError: 'mood')" in rows["moody"]
    (sigil.home / "config.yaml").write_text("quiet:\n  mode: far away\n")
    listing = json.loads(sigil("plugins", "--json").stdout)
    assert next(r for r in listing if r["name"] == "quiet")["note"] == "sending to far away"


def test_plugin_with_an_unknown_hook_is_dropped(sigil, site):
    make_dist(site, "sigil-typo", "sigil_typo", '''
from sigil_core import hookimpl

@hookimpl
def sigil_planx(run):
    return None
''', "typo")
    listing = json.loads(sigil("plugins", "--json").stdout)
    row = next(r for r in listing if r["name"] == "typo")
    assert row["status"] == "failed" and "sigil_planx" in row["error"]


def test_builtins_can_be_disabled_by_env_and_config(sigil, site):
    make_dist(site, "sigil-test-planner", "sigil_test_planner", PLANNER, "test_planner")
    proc = sigil("plugins", "--json", env={"SIGIL_DISABLE_PLUGINS": "builtin.routing,test_planner"})
    status = {r["name"]: r["status"] for r in json.loads(proc.stdout)}
    assert status["builtin.routing"] == "disabled" and status["test_planner"] == "disabled"
    (sigil.home / "config.yaml").write_text("plugins:\n  disabled: [test_planner]\n")
    proc = sigil("orchestrate", "--format", "json", LEAD_TASK)
    steps = [s["name"] for s in json.loads(proc.stdout)["result"]["plan"]["steps"]]
    assert "think_hard" not in steps


def test_disabling_the_only_provider_is_a_clear_error(sigil):
    proc = sigil("orchestrate", LEAD_TASK,
                 env={"SIGIL_DISABLE_PLUGINS": "builtin.offline,provider_anthropic,anthropic"})
    assert proc.returncode == 2
    assert "no LLM provider is available" in proc.stderr


def test_plugins_and_help_import_no_heavy_dependency(sigil):
    heavy = ["anthropic", "websockets", "sqlite_vec", "sqlean", "mcp", "rich", "loguru", "numpy",
             "httpx", "jsonschema"]
    code = textwrap.dedent(f"""
        import sys
        from sigil_core.cli import cli
        for args in (["--help"], ["plugins"]):
            try:
                cli(args, prog_name="sigil")
            except SystemExit:
                pass
        loaded = [m for m in {heavy!r} if m in sys.modules]
        print("LOADED", loaded)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=sigil.env, cwd=sigil.cwd, check=False)
    assert "LOADED []" in proc.stdout, proc.stdout + proc.stderr


MEMORY = '''
from sigil_core import hookimpl
from sigil_core.model import MemoryContext, MemoryItem

@hookimpl
def sigil_retrieve(run, task):
    run.annotate(backend="{name}")
    return MemoryContext(items=[MemoryItem("remembered by {name}")])
'''


def test_two_backends_for_one_phase_need_an_explicit_choice(sigil, site):
    make_dist(site, "sigil-mem-a", "sigil_mem_a", MEMORY.replace("{name}", "a"), "mem_a")
    make_dist(site, "sigil-mem-b", "sigil_mem_b", MEMORY.replace("{name}", "b"), "mem_b")
    env = {"SIGIL_DISABLE_PLUGINS": "memory_sqlite"}
    proc = sigil("orchestrate", LEAD_TASK, env=env)
    assert proc.returncode == 2
    assert "several plugins implement retrieve" in proc.stderr
    assert "mem_a" in proc.stderr and "mem_b" in proc.stderr
    proc = sigil("orchestrate", "--use", "retrieve=mem_b", "--session", "chosen", LEAD_TASK,
                 env=env)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(x) for x in (sigil.sessions / "chosen.jsonl").read_text().splitlines()]
    done = [e for e in events if e["operation"] == "retrieve_context" and
            e["message"].startswith("Completed")]
    assert done[0]["metadata"]["backend"] == "b"
    (sigil.home / "config.yaml").write_text("plugins:\n  use: {retrieve: mem_a}\n")
    assert sigil("orchestrate", LEAD_TASK, env=env).returncode == 0
    bad = sigil("orchestrate", "--use", "retrieve=nobody", LEAD_TASK, env=env)
    assert bad.returncode == 2
    assert "mem_a" in bad.stderr and "mem_b" in bad.stderr and "candidates" in bad.stderr


def test_runs_without_the_builtin_validator_skip_validation_with_an_event(sigil):
    proc = sigil("orchestrate", "--session", "noval", LEAD_TASK,
                 env={"SIGIL_DISABLE_PLUGINS": "builtin.validation"})
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(x) for x in (sigil.sessions / "noval.jsonl").read_text().splitlines()]
    assert any(e["message"].startswith("No validator installed") for e in events)


def test_the_phase_implementations_follow_registrations_and_choices():
    """The host keeps its answer to "who runs this phase" between calls (a run asks ~20
    times): a plugin registered or unregistered, or another choice, changes it."""
    import pytest

    from sigil_core import hookimpl
    from sigil_core.errors import UsageError
    from sigil_core.plugins import PluginHost

    class Planner:
        def __init__(self, name: str) -> None:
            self.name = name

        @hookimpl
        def sigil_plan(self, run, task, route):
            return None

    host = PluginHost(load_entry_points=False).load()
    builtin = host.phase_impls("sigil_plan")
    assert builtin and all(i.plugin_name.startswith("builtin.") for i in builtin)
    assert host.phase_impls("sigil_plan") == builtin
    host.register(Planner("a"), name="plan_a")
    assert host.phase_impls("sigil_plan")[0].plugin_name == "plan_a"
    host.register(Planner("b"), name="plan_b")
    with pytest.raises(UsageError, match="several plugins implement plan"):
        host.phase_impls("sigil_plan")
    host.choices["plan"] = "plan_b"
    assert host.phase_impls("sigil_plan")[0].plugin_name == "plan_b"
    host.choices["plan"] = "plan_a"
    assert host.phase_impls("sigil_plan")[0].plugin_name == "plan_a"
    del host.choices["plan"]
    host.unregister("plan_b")
    assert host.phase_impls("sigil_plan")[0].plugin_name == "plan_a"
    host.unregister("plan_a")
    assert host.phase_impls("sigil_plan") == builtin
    host.phase_impls("sigil_plan").clear()  # the caller's own list
    assert host.phase_impls("sigil_plan") == builtin
