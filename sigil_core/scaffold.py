"""``sigil plugin new KIND NAME``: a complete plugin package to start from.

Each template is a separately pip-installable distribution like the plugins in this repository:
``pyproject.toml`` (setuptools, an entry point in the ``sigil`` group, a ``test`` extra),
the package (``plugin.py`` with the hooks, ``settings.py`` with its config section read by
:func:`sigil_core.read_section`, the implementation), ``tests/`` that pass as generated (a unit
test with :mod:`sigil_core.testing` and an end-to-end run of the real ``sigil`` command), and a
README. The repository's CI generates, installs and tests every kind (tests/test_scaffold.py).
"""

from __future__ import annotations

import re
from pathlib import Path

KINDS = ("strategy", "memory", "sink", "transport", "provider", "tool")
_NAME = re.compile(r"^[a-z][a-z0-9_]{1,40}$")

_PYPROJECT = '''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "sigil-{dist}"
version = "0.1.0"
description = "{summary}"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["sigil-core>=0.1", "attrs>=23.1"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-asyncio>=0.23"]

# How Sigil finds the plugin: an entry point in the `sigil` group naming the hooks' module.
[project.entry-points.sigil]
{name} = "sigil_{name}.plugin"

[tool.setuptools.packages.find]
include = ["sigil_{name}*"]

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
'''

_README = '''# sigil-{dist}

{summary}

Made with `sigil plugin new {kind} {name}`. Install it next to Sigil and it is active:

```bash
pip install -e .[test]
sigil plugins show {name}      # what it registered and the hooks it implements
python -m pytest tests         # its tests: a unit test and a run of the real `sigil` command
```

{usage}

Settings (all optional) go in the `{name}:` section of `~/.sigil/config.yaml`; see
`sigil_{name}/settings.py`. Unknown keys and bad values are errors naming the key.
'''

_SETTINGS = '''"""The `{name}:` section of config.yaml, read with sigil_core.read_section (same errors as
every plugin: the file, the key and the problem)."""

from __future__ import annotations

import attrs


@attrs.define
class Settings:
{fields}
'''

TEMPLATES: dict[str, dict[str, str]] = {}

TEMPLATES["strategy"] = {
    "summary": "A reasoning strategy for Sigil: asks several times, keeps the most frequent answer.",
    "usage": '''Sigil gives a step this strategy when the plan step names it, when an agent lists it in
`strategy_preferences`, or for a complexity range in config:

```yaml
strategies:
  ranges: {{"0.5-0.7": {name}}}                 # complex steps
  fallback: [{name}, chain_of_thought, direct]  # what a failing step falls back to
```''',
    "settings_fields": '''    #: How many answers to ask for.
    samples: int = attrs.field(default=3, validator=attrs.validators.ge(1))''',
    "plugin": '''"""Sigil hooks of {name}: the module the `sigil` entry point names. Keep it light: it is
imported on every `sigil` command; import the implementation inside the hooks."""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl
def sigil_register_strategies(register: Any, config: Any) -> None:
    from sigil_core import read_section

    from .settings import Settings
    from .strategy import {cls}

    register({cls}(read_section(config, "{name}", Settings)))
''',
    "impl_name": "strategy.py",
    "impl": '''"""The {name} strategy: ask `samples` times, keep the most frequent answer (self-consistency).

A strategy gets the run (`run.llm.generate` books every call against the budget), the step and
its context (the prompt parts), and returns a ReasoningResult. Raising makes the step fall back
down the configured chain.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sigil_core import PlanStep, ReasoningResult, Run, StepContext

from .settings import Settings


class {cls}:
    name = "{name}"

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()

    async def execute(self, run: Run, step: PlanStep, context: StepContext) -> ReasoningResult:
        answers: list[Any] = []
        for i in range(self.settings.samples):
            result = await run.llm.generate(
                context.prompt(f"Independent attempt {{i + 1}}: answer on your own."),
                system=context.system(), schema=context.output_schema, purpose="reason",
                component="reasoning", hints={{**context.hints(), "strategy": self.name}})
            answers.append(result.value if context.output_schema else result.text.strip())
        keys = [json.dumps(a, sort_keys=True, default=str) for a in answers]
        best, count = Counter(keys).most_common(1)[0]
        return ReasoningResult(output=answers[keys.index(best)], confidence=count / len(keys),
                               metadata={{"samples": len(keys), "agreeing": count}})
''',
    "test": '''"""{name}: a unit test with a scripted provider, and a run of the real `sigil` command."""

from __future__ import annotations

from sigil_core import PlanStep, StepContext
from sigil_core.testing import ScriptedProvider, events_named, make_run

from sigil_{name}.settings import Settings
from sigil_{name}.strategy import {cls}


async def test_keeps_the_most_frequent_answer(sigil_home):
    provider = ScriptedProvider(["42", "41", "42"])
    run = make_run(provider=provider)
    step = PlanStep("answer", "Answer the question")
    result = await {cls}(Settings(samples=3)).execute(run, step, StepContext("q", step))
    assert result.output == "42" and result.confidence == 2 / 3
    assert len(provider.requests) == 3  # every call went through the budgeted gateway
    assert run.budget.snapshot().used > 0


def test_sigil_uses_it_for_a_complexity_range(sigil_cli):
    sigil_cli.write_config("strategies:\\n  ranges: {{'0.0-1.0': {name}}}\\n{name}: {{samples: 2}}\\n")
    proc = sigil_cli("orchestrate", "Compare two offers and pick the better one")
    assert proc.returncode == 0, proc.stderr
    done = events_named(sigil_cli.session_jsonl(), "{name}", "Completed")
    assert done and all(e["metadata"]["samples"] == 2 for e in done)
''',
}

TEMPLATES["memory"] = {
    "summary": "A memory backend for Sigil: memories in a JSON Lines file, found by shared words.",
    "usage": '''It implements the retrieve and extract phases. When another memory plugin is installed
(memory_sqlite), choose this one once, for both phases:

```bash
sigil orchestrate --use {name} "..."          # or SIGIL_USE={name}
```
```yaml
plugins:
  use: {{memory: {name}}}
```

`sigil_retrieve` runs inside the `memory`/`retrieve_context` operation, concurrently with
planning, and returns a `MemoryContext` of `MemoryItem`s (the steps' prompts list them).
`sigil_extract` runs inside `memory`/`extract_memories` after the steps ran, also when the
contract failed in the end, but not after a run that was aborted (budget exhausted, error);
it returns an `ExtractionResult`.''',
    "settings_fields": '''    #: The JSON Lines file, relative to the Sigil home folder.
    path: str = "{name}.jsonl"
    #: Memories handed to a run at most.
    limit: int = attrs.field(default=5, validator=attrs.validators.ge(1))''',
    "plugin": '''"""Sigil hooks of {name}: the module the `sigil` entry point names. Keep it light: it is
imported on every `sigil` command; import the implementation inside the hooks."""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl
async def sigil_retrieve(run: Any, task: str) -> Any:
    from .store import retrieve

    return retrieve(run, task)


@hookimpl
async def sigil_extract(run: Any, task: str, result: Any, output: Any) -> Any:
    from .store import extract

    return extract(run, task, output)
''',
    "impl_name": "store.py",
    "impl": '''"""A JSON Lines memory: one remembered fact a line; retrieval by words shared with the task."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sigil_core import ExtractionResult, MemoryContext, MemoryItem, Run, read_section

from .settings import Settings

_WORD = re.compile(r"[a-z0-9]{{3,}}")


def _path(run: Run) -> tuple[Path, Settings]:
    settings = read_section(run.config, "{name}", Settings)
    return run.config.home / settings.path, settings


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def retrieve(run: Run, task: str) -> MemoryContext:
    path, settings = _path(run)
    items = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                items.append(MemoryItem(**json.loads(line)))
    wanted = _words(task)
    scored = sorted(((len(wanted & _words(i.content)), i) for i in items),
                    key=lambda pair: -pair[0])
    found = [item for score, item in scored if score][: settings.limit]
    run.annotate(backend="{name}", memories_found=len(found))
    return MemoryContext(items=found)


def extract(run: Run, task: str, output: Any) -> ExtractionResult:
    path, _ = _path(run)
    text = output if isinstance(output, str) else json.dumps(output, default=str)
    item = MemoryItem(content=f"Task: {{task}} -> {{text[:200]}}", memory_type="event",
                      source_session_id=run.session_id)
    known = path.read_text(encoding="utf-8") if path.exists() else ""
    if item.content not in known:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({{"content": item.content, "memory_type": item.memory_type,
                                 "source_session_id": item.source_session_id}}) + "\\n")
    run.annotate(backend="{name}")
    return ExtractionResult(stored=[item])
''',
    "test": '''"""{name}: the phases in process, and chosen once for a real `sigil` run."""

from __future__ import annotations

from sigil_core.testing import make_run

from sigil_{name}.store import extract, retrieve


async def test_what_is_extracted_is_retrieved_for_a_related_task(sigil_home):
    run = make_run()
    extract(run, "Qualify Acme Corp as a lead", {{"tier": "hot"}})
    assert (sigil_home / "{name}.jsonl").exists()
    found = retrieve(run, "What do we know about Acme Corp?")
    assert len(found.items) == 1 and "Acme" in found.items[0].content
    assert retrieve(run, "weather in Paris").items == []


def test_sigil_uses_it_for_both_phases_chosen_once(sigil_cli):
    task = "Qualify this lead: Ann Lee, CTO at Initech"
    for _ in range(2):
        proc = sigil_cli("orchestrate", "--use", "{name}", task)
        assert proc.returncode == 0, proc.stderr
    events = [e for f in sorted(sigil_cli.sessions.glob("*.jsonl"))
              for e in (__import__("json").loads(x) for x in f.read_text().splitlines())]
    done = [e for e in events if e["component"] == "memory"
            and e["message"].startswith("Completed")]
    assert {{e["metadata"].get("backend") for e in done}} == {{"{name}"}}
    assert any(e["metadata"].get("memories_found") for e in done)
''',
}

TEMPLATES["sink"] = {
    "summary": "A log sink for Sigil: every event of every run, one JSON line each, in one file.",
    "usage": '''Every installed sink is on for every run (disable it by name: `SIGIL_DISABLE_PLUGINS={name}`).
The host hands it batches of events after buffering (100 events or 100 ms; errors at once):
`write` is called on the run's thread, so it must not block for long (queue slow I/O to a
thread of your own). `event.json_line()` is the event as one JSON line, the same bytes the
session file gets; `sigil_core.unstructure(event)` gives a dict. A sink that fails to open is
skipped with a warning, recorded in the session.''',
    "settings_fields": '''    #: The file, relative to the working folder.
    path: str = "outputs/{name}.jsonl"''',
    "plugin": '''"""Sigil hooks of {name}: the module the `sigil` entry point names. Keep it light: it is
imported on every `sigil` command; import the implementation inside the hooks."""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl
def sigil_register_log_sinks(register: Any, config: Any) -> None:
    from sigil_core import read_section

    from .settings import Settings
    from .sink import {cls}

    register({cls}(read_section(config, "{name}", Settings)))
''',
    "impl_name": "sink.py",
    "impl": '''"""The {name} sink: appends each batch of events to one file, one JSON line per event."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from sigil_core import LogEvent, Run

from .settings import Settings


class {cls}:
    name = "{name}"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._fh: IO[str] | None = None

    def bind(self, run: Run) -> "{cls}":
        """One instance per run (runs may share a process)."""
        return {cls}(self.settings)

    def open(self, run: Run) -> None:
        path = Path(self.settings.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("a", encoding="utf-8")

    def write(self, events: Sequence[LogEvent]) -> None:
        if self._fh is not None:
            self._fh.write("".join(e.json_line() + "\\n" for e in events))
            self._fh.flush()

    def close(self, run: Run, record: dict[str, Any]) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
''',
    "test": '''"""{name}: a real run writes every event of the session to the sink's file."""

from __future__ import annotations

import json


def test_a_run_writes_every_event_to_the_file(sigil_cli):
    sigil_cli.write_config("{name}: {{path: all-events.jsonl}}\\n")
    proc = sigil_cli("orchestrate", "Qualify this lead: Ann Lee, CTO at Initech")
    assert proc.returncode == 0, proc.stderr
    mine = [json.loads(x) for x in (sigil_cli.cwd / "all-events.jsonl").read_text().splitlines()]
    assert [e["id"] for e in mine] == [e["id"] for e in sigil_cli.session_jsonl()]


def test_it_can_be_disabled_by_name(sigil_cli):
    proc = sigil_cli("orchestrate", "What is 2+2?", env={{"SIGIL_DISABLE_PLUGINS": "{name}"}})
    assert proc.returncode == 0, proc.stderr
    assert not (sigil_cli.cwd / "outputs" / "{name}.jsonl").exists()
''',
}

TEMPLATES["transport"] = {
    "summary": "A monitor transport for Sigil: streams a monitored run's events to a file.",
    "usage": '''Transports start only for monitored runs (`sigil orchestrate --monitor`, or
`cli.monitor.enabled: true`). `start` returns a line for the user (or None); `publish` gets each
batch and must not block the run; `stop` runs when the run ends.''',
    "settings_fields": '''    #: Where the events go, relative to the working folder.
    path: str = "{name}-stream.jsonl"''',
    "plugin": '''"""Sigil hooks of {name}."""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl
def sigil_register_monitor_transports(register: Any, config: Any) -> None:
    from sigil_core import read_section

    from .settings import Settings
    from .transport import {cls}

    register({cls}(read_section(config, "{name}", Settings)))
''',
    "impl_name": "transport.py",
    "impl": '''"""The {name} transport: a monitored run's events as JSON lines in a file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO

from sigil_core import LogEvent, Run

from .settings import Settings


class {cls}:
    name = "{name}"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._fh: IO[str] | None = None

    def bind(self, run: Run) -> "{cls}":
        return {cls}(self.settings)

    async def start(self, run: Run) -> str | None:
        self._fh = Path(self.settings.path).open("a", encoding="utf-8")
        return f"Monitor: events of {{run.session_id}} stream to {{self.settings.path}}"

    def publish(self, events: Sequence[LogEvent]) -> None:
        if self._fh is not None:  # a local file append: quick enough not to block the run
            self._fh.write("".join(e.json_line() + "\\n" for e in events))
            self._fh.flush()

    async def stop(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
''',
    "test": '''"""{name}: a monitored run streams its events; an unmonitored run does not."""

from __future__ import annotations


def test_a_monitored_run_streams_its_events(sigil_cli):
    proc = sigil_cli("orchestrate", "--monitor", "What is 2+2?")
    assert proc.returncode == 0, proc.stderr
    assert "stream to {name}-stream.jsonl" in proc.stdout + proc.stderr
    streamed = (sigil_cli.cwd / "{name}-stream.jsonl").read_text().splitlines()
    assert len(streamed) == len(sigil_cli.session_jsonl())


def test_an_unmonitored_run_starts_no_transport(sigil_cli):
    assert sigil_cli("orchestrate", "What is 2+2?").returncode == 0
    assert not (sigil_cli.cwd / "{name}-stream.jsonl").exists()
''',
}

TEMPLATES["provider"] = {
    "summary": "An LLM provider for Sigil (a canned one to start from: replace `complete`).",
    "usage": '''Choose it with `sigil orchestrate --provider {name}` or `llm: {{provider: {name}}}`;
with no choice, the available provider with the highest `priority` runs (the offline model has
0). `estimate_input_tokens` must be fast and local: the budget check uses it before every
call; `complete` returns the answer with its exact `TokenUsage`. Test a real API against a
local server speaking its HTTP protocol (`sigil_core.testing.server`).''',
    "settings_fields": '''    #: The model id used when the config names none.
    model: str = "{name}-1"''',
    "plugin": '''"""Sigil hooks of {name}."""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl
def sigil_register_providers(register: Any, config: Any) -> None:
    from sigil_core import read_section

    from .provider import {cls}
    from .settings import Settings

    register({cls}(read_section(config, "{name}", Settings)))
''',
    "impl_name": "provider.py",
    "impl": '''"""The {name} provider. It answers with a fixed sentence: replace `complete` with a call to
your model's API (through its official SDK) and report the usage the API returns."""

from __future__ import annotations

import json
from typing import Any

from sigil_core import LLMRequest, LLMResponse, TokenUsage, estimate_tokens

from .settings import Settings


class {cls}:
    name = "{name}"
    #: Below the offline model (0): used only when chosen by name.
    priority = -1
    notice = "Answers come from the {name} template provider, not a model."

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def available(self, config: Any) -> bool:
        return True

    def estimate_input_tokens(self, request: LLMRequest) -> int:
        return estimate_tokens(request.text())

    async def complete(self, request: LLMRequest) -> LLMResponse:
        model = request.model or self.settings.model
        if request.schema is not None:  # structured output: the simplest valid answer
            from sigil_core.testing.schema_instance import instance_for

            data = instance_for(request.schema)
            text = json.dumps(data)
        else:
            data, text = None, f"{name} ({{model}}) read {{len(request.text())}} characters."
        usage = TokenUsage(self.estimate_input_tokens(request), estimate_tokens(text),
                           model=f"{{self.name}}:{{model}}")
        return LLMResponse(text, usage, model, data=data, stop_reason="end_turn")
''',
    "test": '''"""{name}: chosen by name, every call booked with its usage."""

from __future__ import annotations


def test_a_run_with_the_provider_books_its_tokens(sigil_cli):
    proc = sigil_cli("orchestrate", "--provider", "{name}", "--format", "json",
                     "Write a haiku about tests")
    assert proc.returncode in (0, 1), proc.stderr  # its canned answers may fail a contract
    booked = [e["tokens_used"] for e in sigil_cli.session_jsonl()
              if (e.get("tokens_used") or {{}}).get("model")]
    assert booked and all(t["model"].startswith("{name}:") for t in booked)
    assert all(t["total_tokens"] > 0 for t in booked)
''',
}

TEMPLATES["tool"] = {
    "summary": "A tool source for Sigil: a `word_count` tool plan steps can call.",
    "usage": '''A tool has a `name`, a `description`, a JSON Schema `input_schema` for its arguments, and
an async `call(arguments)`; the host validates the arguments against the schema (TOOL_005)
and turns exceptions into recoverable TOOL_002 errors (raise `sigil_core.ToolError` for your
own codes). Plans list tools in a step's `tools_required`; `sigil tools call` runs one.''',
    "settings_fields": '''    #: The tool's name in plans.
    tool_name: str = "word_count"''',
    "plugin": '''"""Sigil hooks of {name}."""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl
def sigil_register_tools(register: Any, config: Any) -> None:
    from sigil_core import read_section

    from .settings import Settings
    from .tools import {cls}

    register({cls}(read_section(config, "{name}", Settings).tool_name))
''',
    "impl_name": "tools.py",
    "impl": '''"""The {name} tool source: one tool that counts words."""

from __future__ import annotations

from typing import Any


class {cls}:
    description = "Count the words of a text"
    input_schema: dict[str, Any] = {{
        "type": "object",
        "properties": {{"text": {{"type": "string", "description": "the text"}}}},
        "required": ["text"],
    }}

    def __init__(self, name: str = "word_count") -> None:
        self.name = name

    async def call(self, arguments: dict[str, Any]) -> dict[str, int]:
        return {{"words": len(str(arguments["text"]).split())}}
''',
    "test": '''"""{name}: the tool through the run's tool call (schema checked, events written)."""

from __future__ import annotations

import pytest
from sigil_core import ToolError
from sigil_core.testing import make_run

from sigil_{name} import plugin


async def test_the_tool_counts_words_and_its_arguments_are_checked(sigil_home):
    run = make_run(plugin)  # the builtins and this plugin's hooks, registered in process
    assert await run.call_tool("word_count", {{"text": "one two three"}}) == {{"words": 3}}
    with pytest.raises(ToolError) as err:
        await run.call_tool("word_count", {{}})
    assert err.value.code == "TOOL_005"
''',
}


def _class_name(name: str, kind: str) -> str:
    suffix = {"strategy": "Strategy", "memory": "Memory", "sink": "Sink",
              "transport": "Transport", "provider": "Provider", "tool": "Tool"}[kind]
    return "".join(part.capitalize() for part in name.split("_")) + suffix


def render(kind: str, name: str) -> dict[str, str]:
    """The files of a new ``kind`` plugin called ``name``: relative path -> text."""
    if kind not in TEMPLATES:
        raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    if not _NAME.match(name):
        raise ValueError(f"invalid plugin name {name!r}: use lowercase letters, digits and '_', "
                         "starting with a letter (2-41 characters)")
    t = TEMPLATES[kind]
    fmt = {"name": name, "dist": name.replace("_", "-"), "cls": _class_name(name, kind),
           "kind": kind}
    summary = t["summary"]
    package = f"sigil_{name}"
    return {
        "pyproject.toml": _PYPROJECT.format(summary=summary, **fmt),
        "README.md": _README.format(summary=summary, usage=t["usage"].format(**fmt), **fmt),
        f"{package}/__init__.py": f'"""{summary}"""\n',
        f"{package}/settings.py": _SETTINGS.format(
            fields=t["settings_fields"].format(**fmt), **fmt),
        f"{package}/plugin.py": t["plugin"].format(**fmt),
        f"{package}/{t['impl_name']}": t["impl"].format(**fmt),
        f"tests/test_{name}.py": t["test"].format(**fmt),
    }


def write(kind: str, name: str, folder: Path) -> list[Path]:
    """Write the package into ``folder`` (which must not exist or be empty)."""
    files = render(kind, name)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} exists and is not empty")
    written = []
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
