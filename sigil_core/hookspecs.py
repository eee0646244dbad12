"""The hooks a Sigil plugin can implement.

Two kinds:

* Registration hooks, ``sigil_register_*(register, config)``: called when the host first needs
  the registry of that kind (a run, a command). Call ``register(obj)`` for each object you
  contribute; the host owns the registry. ``config`` is the run's
  :class:`~sigil_core.config.Config` (read your section with ``config.section(NAME)``): never
  load it yourself. Each object is checked against its shape (the protocols in
  :mod:`sigil_core.protocols`); one that does not fit is dropped with a warning naming the
  plugin, the hook and what is missing. A plugin's object replaces a builtin's of the same name;
  two plugins registering one name: the one chosen with ``--use KIND.NAME=PLUGIN`` wins, else
  the plugin whose name sorts first, with a warning naming both.
* Phase hooks, ``sigil_route`` … ``sigil_extract``: called once per run phase. An implementation
  may return a value, ``None`` (not mine, ask the next plugin) or a coroutine that resolves to
  either. The host awaits implementations one by one in pluggy's order (``tryfirst`` first, the
  builtins are ``trylast``) and **the first non-None result wins**. pluggy's own ``firstresult`` is
  not used: a coroutine object is never None.

An implementation may accept any subset of a hook's arguments (pluggy matches them by name).
Every phase hook receives ``run``, a :class:`sigil_core.run.Run`: the session, the config, the
LLM gateway (``run.llm``), the registries and ``run.operation(...)`` for events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .config import Config
    from .model import (
        Contract,
        ExecutionResult,
        ExtractionResult,
        MemoryContext,
        OrchestrationResult,
        Plan,
        PlanStep,
        RouteDecision,
        StepResult,
        ValidationResult,
    )
    from .run import Run, StepContext

hookspec = pluggy.HookspecMarker("sigil")

Register = Callable[[Any], None]

# --------------------------------------------------------------------------- registration


@hookspec
def sigil_register_providers(register: Register, config: Config) -> None:
    """Register LLM providers (:class:`~sigil_core.protocols.Provider`), by their ``name``.

    The run uses the provider named in config/flags, else the available one with the highest
    ``priority`` (the offline provider has the lowest, so it is the default with no API key).
    """


@hookspec
def sigil_register_strategies(register: Register, config: Config) -> None:
    """Register reasoning strategies (:class:`~sigil_core.protocols.Strategy`), by ``name``.

    The names of the original design are direct, chain_of_thought, tree_of_thoughts, react and
    mcts (a plugin registering one of these names replaces the builtin). Which step gets which
    strategy is the policy of :mod:`sigil_core.strategies`.
    """


@hookspec
def sigil_register_tools(register: Register, config: Config) -> None:
    """Register tools (:class:`~sigil_core.protocols.Tool`) that plan steps can use by name."""


@hookspec
def sigil_register_agents(register: Register, config: Config) -> None:
    """Register agent definitions (:class:`~sigil_core.model.Agent`) runnable with ``--agent``."""


@hookspec
def sigil_register_contracts(register: Register, config: Config) -> None:
    """Register contract templates (:class:`~sigil_core.model.Contract`), by name."""


@hookspec
def sigil_register_log_sinks(register: Register, config: Config) -> None:
    """Register log sinks (:class:`~sigil_core.protocols.LogSink`) that receive every event batch.

    ``write`` is called on the run's event loop: it must not block for long. ``close`` runs on
    a worker thread, unless the sink says it is quick (``close_on_loop = True``); a coroutine
    ``aclose`` is awaited on the loop instead of ``close``.
    """


@hookspec
def sigil_register_monitor_transports(register: Register, config: Config) -> None:
    """Register monitor transports (:class:`~sigil_core.protocols.MonitorTransport`).

    They are started only when the run is asked to be monitored (``--monitor`` or config).
    """


@hookspec
def sigil_register_embedders(register: Register, config: Config) -> None:
    """Register text embedders (:class:`~sigil_core.protocols.Embedder`) for memory backends."""


@hookspec
def sigil_register_memory_backends(register: Register, config: Config) -> None:
    """Register memory backends (:class:`~sigil_core.memory.MemoryBackend`), by ``name``.

    ``memory.backend`` in the config names the one the run and ``sigil memory`` use.
    """


@hookspec
def sigil_plugin_status(sections: dict[str, Any]) -> str | None:
    """Say in a few words what the plugin will do as configured, for ``sigil plugins``.

    E.g. ``"idle: no OTLP endpoint configured"`` for a plugin that stays off until configured.

    :param sections: the config file's top-level sections as read (``{}`` without a file);
        a plugin looks at its own, and at the environment.

    Called on every ``sigil plugins``: keep it cheap (no heavy imports). None means nothing to
    add; every plugin answers for itself (all results are shown, not only the first).
    """


@hookspec
def sigil_config_sections() -> list[str] | None:
    """Name the top-level config-file sections this plugin reads (e.g. ``["mcp_servers"]``).

    Any other top-level key that no loaded plugin claims gets a warning naming the closest
    known one (a misspelt ``budgte:``). A plugin that does not implement this hook claims the
    section named like itself (``monitor_ws:``). Every plugin answers (results are collected).
    """


@hookspec
def sigil_register_commands(cli: click.Group) -> None:
    """Add click commands to the ``sigil`` CLI. Import heavy modules inside the commands."""


# --------------------------------------------------------------------------- phases


@hookspec
def sigil_route(run: Run, task: str) -> RouteDecision | None:
    """Classify the request: intent, complexity, handler and strategy. First non-None wins."""


@hookspec
def sigil_handle_intent(run: Run, task: str, route: RouteDecision) -> OrchestrationResult | None:
    """Take over the run for an intent (e.g. answer a simple query, create an agent).

    Return the finished result to skip planning and the later phases, or None to let the full
    plan-execute-validate flow run. First non-None wins.
    """


@hookspec
def sigil_plan(run: Run, task: str, route: RouteDecision, feedback: str | None,
               contract: Contract | None) -> Plan | None:
    """Decompose the task into a plan (a DAG of steps). ``feedback`` is set when re-planning
    after the previous plan was rejected; ``contract`` is the contract the run's output must
    meet (None without one), whose ``suggested_steps`` a planner may follow. First non-None
    wins."""


@hookspec
def sigil_retrieve(run: Run, task: str) -> MemoryContext | None:
    """Fetch memories relevant to the task. Runs concurrently with planning. First non-None wins;
    with no implementation the phase is skipped."""


@hookspec
def sigil_reason(run: Run, step: PlanStep, context: StepContext) -> StepResult | None:
    """Execute one plan step (choose a strategy, reason, use tools). First non-None wins."""


@hookspec
def sigil_validate(
    run: Run, output: Any, contract: Contract, attempt: int
) -> ValidationResult | None:
    """Check the final output against its contract. First non-None wins."""


@hookspec
def sigil_extract(
    run: Run, task: str, result: ExecutionResult, output: Any
) -> ExtractionResult | None:
    """Learn from the finished run (store memories). First non-None wins; with no
    implementation the phase is skipped.

    ``result.remembered`` holds the facts the final step's answer already listed (the core
    asks for them in that call when memory extraction is on, see
    :func:`sigil_core.memory.phases.fold_facts`): store those rather than asking the model
    again; it is None when the answer carried none."""
