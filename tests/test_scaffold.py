"""Third-party packages for real: `sigil plugin new` packages and a hand-written strategy package,
each pip-installed into a fresh virtualenv and used by the real `sigil` command there.

The fresh virtualenv has no pip and no packages of its own; a `.pth` file lets it import what
this environment has (sigil-core and the repository's plugins, pytest), so the test needs no
network. The package under test is installed into it with pip (`pip --python VENV install`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import site
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from sigil_core.scaffold import KINDS, render, write

LEAD = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"


class Venv:
    def __init__(self, root: Path) -> None:
        self.root = root
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
        self.python = root / "bin" / "python"
        purelib = subprocess.run(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True).stdout.strip()
        parents = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
                   if Path(p).is_dir()]
        # addsitedir, not a plain path line: editable installs are .pth files themselves.
        Path(purelib, "_sigil_parent_env.pth").write_text(
            "".join(f"import site; site.addsitedir({p!r})\n" for p in parents))
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SIGIL_", "ANTHROPIC_", "OPENAI_", "PYTHON"))}
        # No resident worker left behind by the runs (worker.auto_start).
        self.env.update({"NO_COLOR": "1", "COLUMNS": "120", "SIGIL_WORKER_AUTO_START": "0"})

    def pip_install(self, package: Path) -> None:
        cmd = [sys.executable, "-m", "pip", "--python", str(self.python), "install", "-q",
               "--no-deps", "--disable-pip-version-check", str(package)]
        proc = None
        if importlib.util.find_spec("setuptools") is not None:
            # Build with this environment's setuptools when it can build wheels (no download);
            # else pip builds in isolation, fetching setuptools from the package index.
            proc = subprocess.run([*cmd, "--no-build-isolation"], capture_output=True, text=True,
                                  env=self.env, check=False)
        if proc is None or proc.returncode != 0:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, check=False)
        assert proc.returncode == 0, proc.stderr

    def run(self, *args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.python), *args], cwd=cwd, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)


def test_the_cli_writes_a_package_and_refuses_bad_names(sigil):
    proc = sigil("plugin", "new", "strategy", "debate")
    assert proc.returncode == 0, proc.stderr
    assert (sigil.cwd / "sigil-debate" / "pyproject.toml").exists()
    again = sigil("plugin", "new", "strategy", "debate")
    assert again.returncode == 2 and "not empty" in again.stderr
    bad = sigil("plugin", "new", "sink", "Bad-Name")
    assert bad.returncode == 2 and "invalid plugin name" in bad.stderr
    assert sigil("plugin", "new", "nope", "x").returncode == 2


@pytest.mark.parametrize("kind", KINDS)
def test_each_template_installs_into_a_fresh_virtualenv_and_passes_its_tests(tmp_path, kind):
    name = f"my_{kind}"
    package = tmp_path / "pkg"
    write(kind, name, package)
    assert set(render(kind, name)) == {str(p.relative_to(package)) for p in package.rglob("*")
                                       if p.is_file()}
    venv = Venv(tmp_path / "venv")
    venv.pip_install(package)
    shown = venv.run("-m", "sigil_core", "plugins", "show", name, "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["status"] == "active" and not record["problems"]
    assert record["distribution"] == f"sigil-{name.replace('_', '-')}"
    tests = venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=package)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout


SELF_CONSISTENCY = '''
"""A third party's strategy, written from the docs: ask twice, keep the longer answer."""

from sigil_core import ReasoningResult, StrategyError, hookimpl, read_section
import attrs


@attrs.define
class Settings:
    fail: bool = False


class SelfConsistency:
    name = "self_consistency"

    def __init__(self, settings):
        self.settings = settings

    async def execute(self, run, step, context):
        if self.settings.fail:
            raise StrategyError("self_consistency: the samples disagree")
        answers = []
        for i in range(2):
            r = await run.llm.generate(context.prompt(f"Attempt {i + 1}"), system=context.system(),
                                       schema=context.output_schema, purpose="reason",
                                       component="reasoning", hints=context.hints())
            answers.append(r.value if context.output_schema else r.text)
        return ReasoningResult(output=max(answers, key=lambda a: len(str(a))), confidence=0.7,
                               metadata={"samples": 2})


@hookimpl
def sigil_register_strategies(register, config):
    register(SelfConsistency(read_section(config, "self_consistency", Settings)))
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "sigil-self-consistency"
version = "1.2.0"
dependencies = ["sigil-core"]

[project.entry-points.sigil]
self_consistency = "sigil_self_consistency"
'''


@pytest.fixture(scope="module")
def third_party(tmp_path_factory) -> tuple[Venv, Path]:
    root = tmp_path_factory.mktemp("third_party")
    package = root / "pkg"
    (package).mkdir()
    (package / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (package / "sigil_self_consistency.py").write_text(textwrap.dedent(SELF_CONSISTENCY))
    venv = Venv(root / "venv")
    venv.pip_install(package)
    return venv, root


def _orchestrate(venv: Venv, root: Path, config: str, *args: str) -> tuple[
        subprocess.CompletedProcess[str], list[dict], dict]:
    work = root / f"work{len(list(root.glob('work*')))}"
    home = work / "home"
    (home / "agents").mkdir(parents=True)
    (home / "config.yaml").write_text(config)
    (home / "agents" / "closer.yaml").write_text(
        "name: closer\ndescription: Closes deals\ninstructions: Be brief.\n"
        "strategy_preferences: [self_consistency, chain_of_thought]\n")
    proc = venv.run("-m", "sigil_core", "orchestrate", "--format", "json", *args, cwd=work,
                    env={"SIGIL_HOME": str(home)})
    [jsonl] = (work / "outputs" / "sessions").glob("*.jsonl")
    events = [json.loads(line) for line in jsonl.read_text().splitlines()]
    return proc, events, json.loads(proc.stdout) if proc.stdout.strip() else {}


def _steps(events: list[dict]) -> dict[str, dict]:
    return {e["metadata"]["step_name"]: e["metadata"] for e in events
            if e["operation"] == "execute_step"}


def test_a_pip_installed_strategy_serves_an_agents_preferences(third_party):
    venv, root = third_party
    proc, events, out = _orchestrate(venv, root, "", "--agent", "closer", LEAD)
    assert proc.returncode == 0, proc.stderr
    steps = _steps(events)
    assert steps and {s["step_strategy"] for s in steps.values()} == {"self_consistency"}
    assert all("agent 'closer'" in s["strategy_reason"] for s in steps.values())
    # Its LLM calls are in the budget: booked to its operations and within the run's total.
    mine = [e for e in events if e["operation"] == "self_consistency"
            and e["message"].startswith("Completed")]
    assert len(mine) == len(steps)
    booked = sum(e["tokens_used"]["total_tokens"] for e in mine)
    assert booked > 0 and booked <= out["token_summary"]["total_tokens"]
    assert out["token_summary"]["budget"]["used"] <= out["token_summary"]["budget"]["total"]


def test_a_pip_installed_strategy_serves_a_configured_complexity_range(third_party):
    venv, root = third_party
    proc, events, _ = _orchestrate(venv, root, "strategies:\n  ranges: {'0.5-0.7': "
                                   "self_consistency}\n", LEAD)
    assert proc.returncode == 0, proc.stderr
    steps = _steps(events)
    ranged = [s for s in steps.values() if "strategies.ranges 0.5-0.7" in s["strategy_reason"]]
    assert ranged and all(s["step_strategy"] == "self_consistency" for s in ranged)
    others = [s for s in steps.values() if s not in ranged]
    assert others and all(s["step_strategy"] != "self_consistency" for s in others)


def test_a_failing_pip_installed_strategy_falls_back_down_the_configured_chain(third_party):
    venv, root = third_party
    proc, events, _ = _orchestrate(
        venv, root, "strategies:\n  fallback: [self_consistency, direct]\n"
                    "self_consistency: {fail: true}\n", "--agent", "closer", LEAD)
    assert proc.returncode == 0, proc.stderr
    failed = [e for e in events if e["operation"] == "self_consistency" and e["level"] == "warning"
              and "falling back to direct" in e["message"]]
    steps = _steps(events)
    assert len(failed) == len(steps)
    assert {s["step_strategy"] for s in steps.values()} == {"direct"}


def test_a_memory_backend_replaces_memory_sqlite_chosen_once(tmp_path):
    package = tmp_path / "pkg"
    write("memory", "jsonl_memory", package)
    venv = Venv(tmp_path / "venv")
    venv.pip_install(package)
    work, home = tmp_path / "work", tmp_path / "work" / "home"
    home.mkdir(parents=True)
    env = {"SIGIL_HOME": str(home)}
    listing = json.loads(venv.run("-m", "sigil_core", "plugins", "--json", cwd=work,
                                  env=env).stdout)
    if not any(r["name"] == "memory_sqlite" and r["status"] == "active" for r in listing):
        pytest.skip("memory_sqlite is not installed here: nothing to replace")
    both = venv.run("-m", "sigil_core", "orchestrate", LEAD, cwd=work, env=env)
    assert both.returncode == 2 and "--use NAME" in both.stderr
    (home / "config.yaml").write_text("plugins:\n  use: {memory: jsonl_memory}\n")
    for _ in range(2):
        proc = venv.run("-m", "sigil_core", "orchestrate", LEAD, cwd=work, env=env)
        assert proc.returncode == 0, proc.stderr
    assert (home / "jsonl_memory.jsonl").exists()
    assert not (home / "memory.db").exists()  # memory_sqlite never ran
