"""The hook reference (``docs/hooks.md``), generated from :mod:`sigil_core.hookspecs`.

``python -m sigil_core.hookdocs > docs/hooks.md`` rewrites it; ``tests/test_hookdocs.py`` fails
when the page and the hookspecs disagree. Each hook gets its signature, its docstring (when it
is called, what it returns, the first-result rule) and an example implementation from
:data:`EXAMPLES`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from . import hookspecs

EXAMPLES: dict[str, str] = {
    "sigil_register_providers": '''class Echo:
    name, priority = "echo", -1

    def available(self, config):
        return True

    def estimate_input_tokens(self, request):
        return estimate_tokens(request.text())

    async def complete(self, request):
        text = request.text()[-200:]
        return LLMResponse(text, TokenUsage(self.estimate_input_tokens(request), 50,
                                            model="echo:1"), "1")

@hookimpl
def sigil_register_providers(register, config):
    register(Echo())''',
    "sigil_register_strategies": '''class Socratic:
    name = "socratic"

    async def execute(self, run, step, context):
        answer = await run.llm.generate(context.prompt("Question every assumption first."),
                                        system=context.system(), purpose="reason",
                                        component="reasoning")
        return ReasoningResult(output=answer.text, confidence=0.8)

@hookimpl
def sigil_register_strategies(register, config):
    register(Socratic())''',
    "sigil_register_tools": '''class WordCount:
    name, description = "word_count", "Count the words of a text"
    input_schema = {"type": "object", "properties": {"text": {"type": "string"}},
                    "required": ["text"]}

    async def call(self, arguments):
        return len(arguments["text"].split())

@hookimpl
def sigil_register_tools(register, config):
    register(WordCount())''',
    "sigil_register_agents": '''@hookimpl
def sigil_register_agents(register, config):
    register(Agent(name="closer", description="Closes deals", instructions="Be brief.",
                   strategy_preferences=["socratic", "chain_of_thought"]))''',
    "sigil_register_contracts": '''@hookimpl
def sigil_register_contracts(register, config):
    register(Contract(name="haiku", keywords=["haiku"], deliverables=[
        Deliverable(name="poem", type="string", rules=["len(value) < 200"])]))''',
    "sigil_register_log_sinks": '''class Count:
    name = "count"

    def open(self, run):
        self.n = 0

    def write(self, events):  # called on the run's thread: never block for long
        self.n += len(events)

    def close(self, run, record):
        print(f"{self.n} events")

@hookimpl
def sigil_register_log_sinks(register, config):
    register(Count())''',
    "sigil_register_monitor_transports": '''@hookimpl
def sigil_register_monitor_transports(register, config):
    register(MyTransport(config.section("my_transport")))  # start / publish / stop''',
    "sigil_register_embedders": '''@hookimpl
def sigil_register_embedders(register, config):
    register(MyEmbedder())  # name, dimensions, embed(texts) -> list of vectors''',
    "sigil_register_memory_backends": '''@hookimpl
def sigil_register_memory_backends(register, config):
    register(MyBackend())  # name, description, async open(config, embedder, ...) -> store''',
    "sigil_plugin_status": '''@hookimpl
def sigil_plugin_status(sections):
    if not sections.get("my_plugin", {}).get("endpoint"):
        return "idle: no endpoint configured"
    return None''',
    "sigil_config_sections": '''@hookimpl
def sigil_config_sections():
    return ["my_plugin", "my_plugin_servers"]''',
    "sigil_register_commands": '''@hookimpl
def sigil_register_commands(cli):
    @cli.command()
    def hello():
        """Say hello."""
        click.echo("hello")''',
    "sigil_route": '''@hookimpl(tryfirst=True)
def sigil_route(run, task):
    if task.lower().startswith("hi"):
        return RouteDecision("simple_query", 0.1, handler="responder",
                             rationale="a greeting", source="my_router")
    return None  # not mine: the next router decides''',
    "sigil_handle_intent": '''@hookimpl
async def sigil_handle_intent(run, task, route):
    if route.intent != "simple_query":
        return None
    answer = await run.llm.generate(task, purpose="answer", component="orchestrator")
    return OrchestrationResult(session_id=run.session_id, success=True, task=task,
                               output=answer.text)''',
    "sigil_plan": '''@hookimpl
def sigil_plan(run, task, route, feedback):
    return Plan(goal=task, steps=[
        PlanStep("research", "Find the facts", complexity="moderate"),
        PlanStep("answer", "Answer", complexity="simple", dependencies=["research"],
                 reasoning_strategy="socratic", needs_contract=True),
    ])''',
    "sigil_retrieve": '''@hookimpl
async def sigil_retrieve(run, task):
    items = [MemoryItem(content=c) for c in my_store.search(task)]
    run.annotate(backend="my_store", memories_found=len(items))
    return MemoryContext(items=items)''',
    "sigil_reason": '''@hookimpl(wrapper=True)
def sigil_reason(run, step, context):
    result = yield  # whatever implementation ran the step
    run.annotate(observed_by="my_plugin")
    return result''',
    "sigil_validate": '''@hookimpl(tryfirst=True)
def sigil_validate(run, output, contract, attempt):
    if contract.name != "haiku":
        return None
    ok = isinstance(output, dict) and output.get("poem", "").count("\\n") == 2
    return ValidationResult(success=ok, problems=[] if ok else ["a haiku has three lines"])''',
    "sigil_extract": '''@hookimpl
async def sigil_extract(run, task, result, output):
    item = MemoryItem(content=f"{task} -> {output}", memory_type="event",
                      source_session_id=run.session_id)
    my_store.add(item)
    return ExtractionResult(stored=[item])''',
}

_HEADER = """# Hook reference

Generated from `sigil_core/hookspecs.py` by `python -m sigil_core.hookdocs > docs/hooks.md`
(a test fails when they disagree). Every name used in the examples is importable from
`sigil_core` ([public API](api.md)).

{intro}

Mark an implementation with `@hookimpl`; `@hookimpl(tryfirst=True)` runs before other plugins,
`@hookimpl(trylast=True)` after them (the builtins are `trylast`), and
`@hookimpl(wrapper=True)` (phase hooks only) wraps the call: a generator that yields once,
receives the phase's result (or its exception) and returns the result to use.
"""


def _hooks() -> list[tuple[str, Callable[..., Any]]]:
    return [(name, fn) for name, fn in vars(hookspecs).items()
            if name.startswith("sigil_") and callable(fn)]


def render() -> str:
    intro = inspect.cleandoc(hookspecs.__doc__ or "").split("\n", 1)[1].strip()
    out = [_HEADER.format(intro=intro)]
    out.append("## Contents\n")
    for name, _ in _hooks():
        out.append(f"- [`{name}`](#{name})")
    for name, fn in _hooks():
        sig = str(inspect.signature(fn)).replace("'", "")
        kind = ("phase" if name in ("sigil_route", "sigil_handle_intent", "sigil_plan",
                                    "sigil_retrieve", "sigil_reason", "sigil_validate",
                                    "sigil_extract") else "registration")
        out.append(f"\n## {name}\n")
        out.append(f"```python\ndef {name}{sig}\n```\n")
        out.append(f"*{kind} hook*\n")
        out.append(inspect.cleandoc(fn.__doc__ or "").replace("``", "`") + "\n")
        example = EXAMPLES.get(name)
        if example:
            out.append(f"Example:\n\n```python\n{example}\n```")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
