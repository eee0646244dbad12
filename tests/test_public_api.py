"""The public API plugins build on: sigil_core.__all__, py.typed, read_section, write_atomic,
sigil_core.testing, and builtins that are ordinary plugins (each sink disableable alone)."""

from __future__ import annotations

import ast
import asyncio
import importlib
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import attrs
import pytest
from core_cli import LEAD_TASK

import sigil_core
from sigil_core import (
    ConfigError,
    ReasoningResult,
    StepContext,
    hookimpl,
    load_config,
    read_section,
    write_atomic,
)
from sigil_core.testing import ScriptedProvider, SigilCLI, make_run

ROOT = Path(sigil_core.__file__).parent


def test_every_public_name_resolves_and_type_checkers_see_the_same_names():
    plain = ["__version__", "hookimpl", "PUBLIC_MODULES"]
    assert sorted(sigil_core.__all__) == sorted([*plain, *sigil_core._EXPORTS])
    for name in sigil_core.__all__:
        assert getattr(sigil_core, name) is not None, name
    tree = ast.parse((ROOT / "__init__.py").read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
    typed = {alias.asname or alias.name for node in ast.walk(block)
             if isinstance(node, ast.ImportFrom) and node.level == 1 for alias in node.names}
    assert typed == set(sigil_core.__all__) - set(plain)
    assert (ROOT / "py.typed").exists()
    with pytest.raises(AttributeError):
        sigil_core.not_a_public_name  # noqa: B018


def test_importing_the_public_api_stays_cheap():
    code = ("import sys, sigil_core; from sigil_core import hookimpl; "
            "print(sorted(m for m in ('attrs', 'cattrs', 'sigil_core.model') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False).stdout
    assert out.strip() == "[]"


def test_the_api_reference_lists_exactly_the_public_names():
    doc = (ROOT.parent / "docs" / "api.md").read_text()
    top, modules = doc.split("\n# Public modules besides the top level\n")
    listed = {line.split("`")[1] for line in top.splitlines() if line.startswith("| `")}
    assert listed == set(sigil_core.__all__)
    assert set(sigil_core.PUBLIC_MODULES) - {"sigil_core"} == set(
        re.findall(r"`(sigil_core\.[a-z_.]+)`", modules))


def test_every_name_the_reference_gives_a_public_module_exists():
    doc = (ROOT.parent / "docs" / "api.md").read_text()
    modules = doc.split("\n# Public modules besides the top level\n")[1]
    checked = 0
    for section in modules.split("\n## ")[1:]:
        heading, _, body = section.partition("\n")
        named = re.findall(r"`(sigil_core[a-z_.]*)`", heading)
        for line in body.splitlines():
            cells = line.split(" | ")
            if not line.startswith("| `") or cells[0] == "| `sigil_*`":
                continue
            if cells[0].startswith("| `sigil_core."):  # a module and the names it offers
                where = [cells[0].split("`")[1]]
                names = re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", cells[1])
            else:
                where, names = named, [cells[0].split("`")[1]]
            for name in names:
                found = [m for m in where if hasattr(importlib.import_module(m), name)]
                assert found, f"docs/api.md: {name} is in none of {where}"
                checked += 1
    assert checked > 40


def test_every_name_a_public_module_exports_is_documented():
    doc = (ROOT.parent / "docs" / "api.md").read_text()
    modules = doc.split("\n# Public modules besides the top level\n")[1]
    missing = [f"{module}.{name}" for module in sigil_core.PUBLIC_MODULES if module != "sigil_core"
               for name in getattr(importlib.import_module(module), "__all__", ())
               if f"`{name}`" not in modules]
    assert not missing, f"not in docs/api.md: {missing}"


@attrs.define
class EchoSettings:
    greeting: str = "hello"
    repeat: int = attrs.field(default=1, validator=attrs.validators.ge(1))


@pytest.mark.parametrize("section,problem", [
    ("echo: {greting: hi}", "echo.greting: unknown setting; did you mean 'greeting'?"),
    ("echo: {repeat: many}", "echo.repeat"),
    ("echo: {repeat: 0}", "'repeat' must be >= 1"),
    ("echo: [1, 2]", "'echo' must be a mapping"),
])
def test_read_section_errors_name_the_file_and_the_key(sigil_home, section, problem):
    (sigil_home / "config.yaml").write_text(section + "\n")
    with pytest.raises(ConfigError) as err:
        read_section(load_config(), "echo", EchoSettings)
    assert problem in str(err.value) and str(sigil_home / "config.yaml") in str(err.value)


def test_read_section_reads_values_and_defaults(sigil_home):
    (sigil_home / "config.yaml").write_text("echo: {repeat: 3}\n")
    config = load_config()
    assert config.read_section("echo", EchoSettings) == EchoSettings("hello", 3)
    assert read_section(config, "absent", EchoSettings) == EchoSettings()


def test_write_atomic_replaces_whole_files_only(tmp_path):
    path = tmp_path / "out.json"
    write_atomic(path, {"a": 1})

    class Unprintable:
        def __str__(self):
            raise ValueError("cannot be shown")

    with pytest.raises(ValueError):  # fails halfway: the old file stays whole
        write_atomic(path, {"a": Unprintable()})
    assert json.loads(path.read_text()) == {"a": 1}
    write_atomic(path, {"a": "\ud800"})  # text that was never valid Unicode is still written
    assert json.loads(path.read_text()) == {"a": "\ud800"}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    assert path.stat().st_mode & 0o777 == 0o600


def test_write_atomic_never_writes_through_a_name_someone_put_in_its_way(tmp_path):
    """The temporary file's first name is predictable (pid and a counter): one that is taken,
    by a file or a symlink, is left alone and another name is used (O_EXCL, as mkstemp)."""
    import os

    from sigil_core import files

    path = tmp_path / "out.json"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    n = next(files._temp_count)
    for k in range(n + 1, n + 4):  # the next names this process would use
        (tmp_path / f".out.json.{os.getpid()}.{k}.tmp").symlink_to(victim)
    for value in range(3):
        write_atomic(path, {"a": value})
        assert json.loads(path.read_text()) == {"a": value}
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.is_symlink()) == [
        "out.json", "victim.txt"]


class Twice:
    """A strategy under unit test with the public testing helpers."""

    name = "twice"

    async def execute(self, run, step, context):
        a = await run.llm.generate(context.prompt(), purpose="reason", component="reasoning")
        b = await run.llm.generate(context.prompt(a.text), purpose="reason",
                                   component="reasoning")
        return ReasoningResult(output=b.text, confidence=0.5)


async def test_make_run_and_a_scripted_provider_unit_test_a_strategy(sigil_home):
    from sigil_core import PlanStep

    provider = ScriptedProvider(["first", "second"])
    run = make_run(provider=provider)
    step = PlanStep("think", "Think twice")
    async with run.operation("reasoning", "twice") as op:
        result = await Twice().execute(run, step, StepContext(task="t", step=step))
    assert result.output == "second"
    assert [r.purpose for r in provider.requests] == ["reason", "reason"]
    assert op.tokens.total_tokens > 0 and run.budget.snapshot().used == op.tokens.total_tokens
    with pytest.raises(AssertionError, match="ran out of answers"):
        await provider.complete(provider.requests[0])


async def test_a_scripted_provider_registered_as_a_plugin_is_the_runs_provider(sigil_home):
    provider = ScriptedProvider(default=lambda request: "scripted answer")
    run = make_run(provider)
    assert run.llm.provider is provider
    assert (await run.llm.generate("hi", purpose="test")).text == "scripted answer"


def test_the_cli_runner_uses_a_home_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGIL_TOKEN_BUDGET", "5")  # the caller's settings never leak in
    cli = SigilCLI(tmp_path)
    proc = cli("orchestrate", "--format", "json", LEAD_TASK)
    assert proc.returncode == 0, proc.stderr
    assert cli.session_json()["task"] == LEAD_TASK and cli.session_jsonl()


def test_the_cli_fixture_is_loaded_by_pytest(sigil_cli):
    assert sigil_cli.env["SIGIL_HOME"] == str(sigil_cli.home)


class Wrap:
    @hookimpl(wrapper=True)
    def sigil_route(self, run, task):
        decision = yield
        decision.source = "wrapped"
        return decision


async def test_a_wrapper_registered_in_process_wraps_the_phase(sigil_home):
    run = make_run(Wrap())
    decision = await run.host.call_first("sigil_route", run=run, task="What is 2+2?")
    assert decision.source == "wrapped"


def test_each_builtin_sink_can_be_disabled_on_its_own(sigil):
    proc = sigil("orchestrate", "--format", "json", LEAD_TASK,
                 env={"SIGIL_DISABLE_PLUGINS": "builtin.daily_log"})
    assert proc.returncode == 0, proc.stderr
    assert not (sigil.cwd / "outputs" / "logs").exists()
    files = json.loads(proc.stdout)["session_files"]
    assert [Path(f).suffix for f in files] == [".jsonl", ".json"]
    proc = sigil("orchestrate", "--format", "json", "--session", "s2", LEAD_TASK,
                 env={"SIGIL_DISABLE_PLUGINS": "builtin.session_json"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["session_files"] == ["outputs/sessions/s2.jsonl"]
    assert not (sigil.sessions / "s2.json").exists()


class ThreadRecordingSink:
    """A third-party sink that says nothing about its close: it may wait (a flush)."""

    name = "thread_recorder"

    def __init__(self, quick: bool = False) -> None:
        self.threads: list[str] = []
        if quick:
            self.close_on_loop = True

    def open(self, run):
        pass

    def write(self, events):
        pass

    def close(self, run, record):
        self.threads.append(threading.current_thread().name)


class _Sinks:
    def __init__(self, *sinks):
        self.sinks = sinks

    @hookimpl
    def sigil_register_log_sinks(self, register, config):
        for sink in self.sinks:
            register(sink)


async def test_a_sink_that_may_wait_closes_on_a_worker_thread_the_quick_ones_on_the_loop(
        sigil_home, monkeypatch):
    from sigil_core.builtin import sinks as builtin_sinks
    from sigil_core.config import load_config
    from sigil_core.orchestrator import Orchestrator, RunOptions
    from sigil_core.testing import make_host

    slow, quick = ThreadRecordingSink(), ThreadRecordingSink(quick=True)
    quick.name = "quick_recorder"
    host = make_host(_Sinks(slow, quick))
    records: list[str] = []
    real = builtin_sinks.write_text_atomic
    monkeypatch.setattr(builtin_sinks, "write_text_atomic", lambda path, text, **kw: (
        records.append(threading.current_thread().name), real(path, text, **kw))[1])
    outcome = await Orchestrator(load_config(), host).run(RunOptions(task="What is 2+2?"))
    assert outcome.exit_code == 0
    loop_thread = threading.current_thread().name
    assert quick.threads == [loop_thread] and records == [loop_thread]  # the session record
    assert slow.threads and slow.threads[0] != loop_thread


class AwaitedSink:
    """A sink that closes with a coroutine (LogSink.aclose), and may fail to."""

    name = "awaited"

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.closed: list[tuple[str, str]] = []

    def open(self, run):
        pass

    def write(self, events):
        pass

    def close(self, run, record):  # never called: aclose is
        raise AssertionError("close called on a sink with aclose")

    async def aclose(self, run, record):
        await asyncio.sleep(0)  # it may wait, on the run's loop
        self.closed.append((threading.current_thread().name, record["status"]))
        if self.error is not None:
            raise self.error


async def test_a_sink_with_aclose_is_awaited_on_the_loop_and_its_failure_is_a_storage_error(
        sigil_home):
    from sigil_core.config import load_config
    from sigil_core.errors import StorageError
    from sigil_core.orchestrator import Orchestrator, RunOptions
    from sigil_core.testing import make_host

    fine = AwaitedSink()
    outcome = await Orchestrator(load_config(), make_host(_Sinks(fine))).run(
        RunOptions(task="What is 2+2?"))
    assert outcome.exit_code == 0
    assert fine.closed == [(threading.current_thread().name, "ok")]
    full = AwaitedSink(StorageError("/x/y.log: No space left on device"))
    outcome = await Orchestrator(load_config(), make_host(_Sinks(full))).run(
        RunOptions(task="What is 2+2?"))
    assert full.closed and outcome.exit_code == 4
    assert any("No space left" in note for note in outcome.notes)
