"""The run: the spec's eight phases, in order, each through its hook.

initialize -> route -> (intent handler) -> plan || retrieve -> execute (DAG) -> validate (with
retries) -> extract -> complete. Planning and retrieval run concurrently (retrieval needs only
the task); plan steps run as soon as their dependencies are done. Any budget exhaustion ends the
run with a critical TOKEN_001 event and the partial result saved.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import attrs

from . import interrupts
from .agents import get_agent
from .config import Config
from .contracts import contract_schema, describe_contract
from .dag import final_step, normalise_plan, run_dag, topological_order, validate_plan
from .errors import (
    BudgetExhaustedError,
    ContractError,
    PlanError,
    RunInterruptedError,
    RunStopped,
    SigilError,
    StorageError,
    UsageError,
)
from .events import EventBus
from .files import private_mkdir
from .memory import preload_embedder
from .model import (
    Agent,
    Contract,
    ErrorInfo,
    ExecutionContext,
    ExecutionResult,
    MemoryContext,
    OrchestrationResult,
    Plan,
    PlanStep,
    RouteDecision,
    StepResult,
    TokenUsage,
    iso_ms,
    unstructure,
    utcnow,
)
from .plugins import PHASE_HOOKS, PluginHost
from .run import Run, StepContext
from .strategies import (
    choose_strategy,
    handler_for_intent,
    settings_for,
    strategy_for_complexity,
)

SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")

#: Rough tokens per step by strategy, for the plan's estimate (dry runs and the plan event).
STRATEGY_TOKEN_ESTIMATE = {
    "direct": 700, "chain_of_thought": 1500, "tree_of_thoughts": 8000, "react": 4000,
    "mcts": 12000,
}

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUDGET = 0, 1, 2, 3
#: The session record could not be written (disk full, I/O error); wins over 0, 1 and 3.
EXIT_STORAGE = 4


@attrs.define
class RunOptions:
    """What ``sigil orchestrate`` was asked (the spec's options)."""

    task: str
    agent: str | None = None
    budget: int | None = None
    monitor: bool = False
    verbose: bool = False
    output: str | None = None
    session: str | None = None
    dry_run: bool = False
    provider: str | None = None
    #: Continue this session (``--resume``): the task, agent and finished work come from its
    #: journal; ``budget`` is the new total for the whole session.
    resume: str | None = None


@attrs.define
class Outcome:
    result: OrchestrationResult
    exit_code: int
    session_files: list[str] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)
    #: Route and plan only (``--dry-run``): ``result.output`` describes the path.
    dry_run: bool = False
    #: What the provider wants every reader of the result told (its ``notice`` attribute, e.g.
    #: the offline model saying its answers are not a real model's).
    provider_notice: str | None = None


# =========================================================================== preparation


def check_options(options: RunOptions, config: Config, host: PluginHost) -> tuple[int, Agent | None]:
    """Reject bad input before anything is written (UsageError, exit 2)."""
    if not options.task or not options.task.strip():
        raise UsageError("the task is empty: say what Sigil should do, e.g. "
                         "sigil orchestrate \"Qualify this lead: ...\"")
    budget = options.budget if options.budget is not None else config.budget.total
    if not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0:
        raise UsageError(f"the budget must be a positive whole number of tokens, got {budget!r}")
    if options.session is not None and options.resume is None:
        if not SESSION_ID.match(options.session):
            raise UsageError(
                f"invalid session id {options.session!r}: use letters, digits, '_' or '-' "
                "(no path separators or dots), at most 128 characters")
        if (config.outputs_dir / "sessions" / f"{options.session}.jsonl").exists():
            raise UsageError(f"session {options.session!r} already exists in "
                             f"{config.outputs_dir / 'sessions'}; choose another id")
    for hook in PHASE_HOOKS:
        host.phase_impls(hook)  # several plugins for one phase and no choice: say so now
    agent = get_agent(config, host, options.agent) if options.agent else None
    if agent and agent.contract and agent.contract not in host.registry("contracts"):
        raise UsageError(f"agent {agent.name!r} names unknown contract {agent.contract!r}; known: "
                         f"{', '.join(sorted(host.registry('contracts')))}")
    if options.output:
        target = Path(options.output).expanduser()
        if target.exists() and not target.is_file():
            # Writing replaces the path by a new file: never do that to a device, a FIFO...
            raise UsageError(f"cannot write --output {options.output}: it exists and is not a "
                             "regular file; give a new path or a regular file")
        parent = target.resolve().parent
        if not parent.is_dir():
            raise UsageError(f"cannot write --output {options.output}: folder {parent} does not "
                             "exist")
        if not os.access(parent, os.W_OK):
            raise UsageError(f"cannot write --output {options.output}: folder {parent} is not "
                             "writable")
    _check_outputs_dir(config.outputs_dir)
    return budget, agent


#: Outputs folders this process has written a probe into: a process that runs many runs
#: (``sigil batch``) writes the probe into each folder once, not three file operations a run.
_WRITABLE: set[Path] = set()


def _check_outputs_dir(folder: Path) -> None:
    try:
        private_mkdir(folder / "sessions")
        if folder in _WRITABLE:
            return
        probe = folder / "sessions" / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        _WRITABLE.add(folder)
    except OSError as exc:
        raise UsageError(f"the outputs directory {folder} is not writable ({exc.strerror or exc}); "
                         "run from a writable folder or set SIGIL_OUTPUTS_DIR") from None


def replace_undecodable(text: str) -> tuple[str, int]:
    """``text`` with every lone surrogate replaced by U+FFFD, and how many there were.

    Python hands undecodable argv bytes over as lone surrogates (PEP 383); they cannot be
    written as UTF-8, so every log sink would fail on the first event that carries the task.
    """
    if text.isascii():
        return text, 0
    count = 0
    chars = list(text)
    for i, ch in enumerate(chars):
        if "\ud800" <= ch <= "\udfff":
            chars[i] = "\ufffd"
            count += 1
    return ("".join(chars), count) if count else (text, 0)


def choose_provider(config: Config, host: PluginHost, requested: str | None = None) -> Any:
    """The provider for a run, bound to the config.

    ``requested`` (``--provider``) or ``llm.provider`` names a provider (``openai``), one of a
    provider's endpoint profiles (``openai:ollama``), or a profile alone (``ollama``) when one
    provider has it; a provider offers profiles through an optional ``profiles(config)`` method
    and receives the chosen one as ``bind(config, profile=NAME)``. With no name, the available
    provider with the highest priority wins.
    """
    providers = host.registry("providers")
    name = requested or config.llm.provider
    profile: str | None = None
    if name:
        provider, profile = _named_provider(providers, name, config)
        if profile is None and not provider.available(config):
            hint = getattr(provider, "setup_hint", None) or "e.g. its API key is missing"
            raise UsageError(f"provider {name!r} is not configured: {hint}")
    else:
        candidates = [p for p in providers.values() if _safe_available(p, config)]
        if not candidates:
            raise UsageError("no LLM provider is available; the builtin offline provider may "
                             "have been disabled (check plugins.disabled / SIGIL_DISABLE_PLUGINS)")
        provider = max(candidates, key=lambda p: getattr(p, "priority", 0))
    bind = getattr(provider, "bind", None)
    if bind is None:
        return provider
    return bind(config, profile=profile) if profile is not None else bind(config)


def _profiles(provider: Any, config: Config) -> list[str]:
    lister = getattr(provider, "profiles", None)
    return list(lister(config)) if lister is not None else []


def _named_provider(providers: dict[str, Any], name: str, config: Config
                    ) -> tuple[Any, str | None]:
    if name in providers:
        return providers[name], None
    base, sep, profile = name.partition(":")
    if sep and base in providers:
        known = _profiles(providers[base], config)
        if profile in known:
            return providers[base], profile
        raise UsageError(f"provider {base!r} has no endpoint profile {profile!r}; configured: "
                         f"{', '.join(known) or 'none'} (see the {base}.profiles config section)")
    owners = [p for p in providers.values() if name in _profiles(p, config)]
    if len(owners) == 1:
        return owners[0], name
    if len(owners) > 1:
        raise UsageError(f"endpoint profile {name!r} is offered by several providers; name one "
                         f"({', '.join(sorted(f'{p.name}:{name}' for p in owners))})")
    raise UsageError(f"unknown LLM provider {name!r}; installed: "
                     f"{', '.join(sorted(providers)) or 'none'}")


def _safe_available(provider: Any, config: Config) -> bool:
    try:
        return bool(provider.available(config))
    except Exception:  # noqa: BLE001
        return False


def choose_contract(task: str, agent: Agent | None, host: PluginHost) -> Contract | None:
    contracts = host.registry("contracts")
    if agent is not None:
        return contracts.get(agent.contract) if agent.contract else None
    low = task.lower()
    for contract in contracts.values():
        if any(re.search(r"\b" + re.escape(k), low) for k in contract.keywords):
            return cast("Contract | None", contract)
    return None


def assign_strategies(run: Run, plan: Plan, agent: Agent | None) -> None:
    """Give each step its strategy and the reason, by the policy of :mod:`.strategies`."""
    installed = run.registry("strategies")
    tools = run.registry("tools")
    settings = settings_for(run.config)
    for step in plan.steps:
        if step.strategy_reason is not None:
            continue  # chosen already (a resumed plan)
        choice = choose_strategy(
            step.complexity, installed, explicit=step.reasoning_strategy,
            preferences=agent.strategy_preferences if agent else (),
            agent_name=agent.name if agent else None, settings=settings,
            tools_needed=any(t in tools for t in step.tools_required))
        step.reasoning_strategy, step.strategy_reason = choice.name, choice.reason


def estimate_plan_tokens(plan: Plan) -> int:
    return sum(STRATEGY_TOKEN_ESTIMATE.get(s.reasoning_strategy or "chain_of_thought", 1500)
               for s in plan.steps)


# =========================================================================== the run


class Orchestrator:
    """Runs one task through the phases. ``listeners`` see every event (the live display)."""

    def __init__(self, config: Config, host: PluginHost,
                 listeners: list[Callable[[Any], None]] | None = None,
                 notify: Callable[[str], None] | None = None,
                 budget_pool: Any = None) -> None:
        self.config = config
        self.host = host
        #: A token budget shared by every run of this orchestrator (``sigil batch``).
        self.budget_pool = budget_pool
        self.listeners = listeners or []
        self.notify = notify or (lambda msg: None)
        #: A provider to use instead of choosing one (``sigil replay``'s ReplayProvider).
        self.provider_override: Any = None
        #: The cassette a replay serves tools and memories from (see replay.py).
        self.replay: Any = None
        host.configure(config)  # the registration hooks get the run's config

    async def run(self, options: RunOptions) -> Outcome:
        checkpoint = None
        if options.resume is not None:
            checkpoint, options = self._resume_options(options)
        budget, agent = check_options(options, self.config, self.host)
        if checkpoint is not None and budget <= checkpoint.used:
            raise UsageError(
                f"session {checkpoint.session_id!r} already used {checkpoint.used:,} tokens of "
                f"its budget of {budget:,}; resume it with a larger one (--budget N, the new "
                "total for the whole session)")
        provider = self.provider_override or choose_provider(self.config, self.host,
                                                             options.provider)
        # The provider may start slow work now (importing its SDK in the background, see
        # preload.py), overlapped with everything the run does before its first LLM call.
        prepare = getattr(provider, "prepare", None)
        if callable(prepare):
            prepare()
        session_id = options.session or f"sess_{uuid.uuid4().hex[:12]}"
        task, undecodable = replace_undecodable(options.task.strip())
        ctx = ExecutionContext(
            session_id=session_id, correlation_id=session_id, task=task,
            budget=budget, started_at=utcnow(), agent=agent.name if agent else None,
            monitor=options.monitor or self.config.cli.monitor.enabled,
            verbose=options.verbose, output_file=options.output, dry_run=options.dry_run,
            attempt=checkpoint.attempt if checkpoint else 1,
        )
        bus = EventBus(buffer_size=self.config.logging.buffer_size,
                       flush_interval_ms=self.config.logging.flush_interval_ms)
        bus.listeners.extend(self.listeners)
        run = Run(ctx, self.config, self.host, provider, bus=bus, budget_pool=self.budget_pool)
        # Plugin failures the host survived (load, registration, sink start) go into the session
        # too, so its record explains a run that behaved differently. Those found from here on
        # are recorded as they happen (the host reports them to the current run).
        earlier = list(self.host.problems)
        # The current run for this task and those it starts, until the run is over: not the
        # caller's afterwards (a finished run would keep receiving plugin problems, and
        # stay alive as long as the caller's context).
        token = run.activate()
        try:
            if checkpoint is not None:
                run.seed_tokens(checkpoint.records, checkpoint.used)
                run.state["checkpoint"] = checkpoint
                run.state["earlier_tool_calls"] = checkpoint.tool_calls
            if self.replay is not None:
                self._prepare_replay(run)
            sinks = self._open_sinks(run)
            recorder = self._open_cassette(run)
            for problem in earlier:
                run.plugin_problem(problem)
            if undecodable:
                run.event("warning", "cli", "initialize",
                          f"The task held {undecodable} byte(s) that are not valid UTF-8; each was "
                          "replaced by U+FFFD", metadata={"replaced_bytes": undecodable})
            guard = _StopGuard(run, self.config.llm.stop_grace_s)
            # From here on a Ctrl-C or SIGTERM (also one received before the run existed) stops
            # the run and the session is still written, with status "interrupted".
            interrupts.attach(asyncio.get_running_loop(), guard.on_signal)
            try:
                notes: list[str] = []
                if ctx.monitor:
                    notes += await self._start_monitors(run)
                for note in notes:
                    self.notify(note)
                guard.task = asyncio.create_task(self._phases(run, agent))
                try:
                    outcome = await guard.task
                finally:
                    guard.disarm()
                    run.bus.flush()  # the last events reach the monitors before they stop
                    await run.aclose()
                await self._finish(run, outcome, sinks)
            finally:
                interrupts.detach()
                if recorder is not None:
                    recorder.close()
            outcome.provider_notice = getattr(run.llm.provider, "notice", None)
            return outcome
        finally:
            run.deactivate(token)

    def _resume_options(self, options: RunOptions) -> tuple[Any, RunOptions]:
        from .resume import load_checkpoint

        if options.dry_run:
            raise UsageError("--dry-run and --resume do not go together")
        cp = load_checkpoint(self.config.outputs_dir / "sessions", options.resume or "")
        if options.session not in (None, cp.session_id):
            raise UsageError("--session and --resume name different sessions")
        if cp.plan is not None:
            installed = self.host.registry("strategies")
            missing = sorted({s.reasoning_strategy for s in cp.plan.steps
                              if s.name not in cp.steps and s.reasoning_strategy
                              and s.reasoning_strategy not in installed})
            if missing:
                raise UsageError(
                    f"cannot resume {cp.session_id!r}: its plan uses the strategy "
                    f"{', '.join(missing)}, which is no longer installed (the plugins changed); "
                    f"install it again or start a new session")
        # The resumed session keeps its task, agent and budget unless told otherwise.
        return cp, attrs.evolve(options, task=cp.task, session=cp.session_id,
                                agent=options.agent or cp.agent,
                                budget=options.budget if options.budget is not None
                                else cp.budget or None)

    def _prepare_replay(self, run: Run) -> None:
        from .model import structure
        from .resume import ToolCall

        cassette = self.replay
        run.state["replay"] = True
        run.state["earlier_tool_calls"] = {
            key: ToolCall(key.split(" ", 1)[0], {}, True, result)
            for key, result in cassette.tools.items()}
        if cassette.memory_recorded:
            run.state["replay_memory"] = (structure(cassette.memory, MemoryContext,
                                                    what="the cassette's memories")
                                          if cassette.memory else None)

    def _open_cassette(self, run: Run) -> Any:
        from .replay import (
            CassetteRecorder,
            cassette_path,
            secret_values,
            should_record,
        )

        if run.ctx.dry_run or not should_record(self.config, run.llm.provider_name):
            return None
        try:
            recorder = CassetteRecorder(
                cassette_path(self.config.outputs_dir / "sessions", run.session_id),
                secret_values(self.config),
                {"session_id": run.session_id, "task": run.ctx.task, "agent": run.ctx.agent,
                 "budget": run.ctx.budget, "provider": run.llm.provider_name})
        except OSError as exc:
            raise UsageError(f"cannot write the session's cassette: {exc}") from None
        run.state["cassette"] = recorder
        return recorder

    # ----------------------------------------------------------------- plumbing

    def _open_sinks(self, run: Run) -> list[Any]:
        sinks = []
        for sink in self.host.registry("log_sinks").values():
            bind = getattr(sink, "bind", None)
            instance = bind(run) if bind else sink
            try:
                instance.open(run)
            except Exception as exc:  # noqa: BLE001 - one sink must not stop the run
                plugin = self.host.owner("log_sinks", sink.name) or "?"
                self.host.problem(plugin, "open", f"log sink {sink.name!r} of plugin {plugin!r} "
                                  f"failed to start and is skipped: {type(exc).__name__}: {exc}")
                continue
            sinks.append(instance)
        run.bus.sinks = sinks
        return sinks

    async def _start_monitors(self, run: Run) -> list[str]:
        transports = self.host.registry("monitor_transports")
        if not transports:
            return [("--monitor: no monitor transport is installed, running without one "
                    "(install the monitor_ws plugin: pip install ./plugins/monitor_ws)")]
        lines = []
        for transport in transports.values():
            bind = getattr(transport, "bind", None)
            instance = bind(run) if bind else transport
            try:
                line = await instance.start(run)
            except Exception as exc:  # noqa: BLE001 - a monitor must never stop the run
                lines.append(f"--monitor: {instance.name} failed to start: {exc}")
                continue
            run.bus.transports.append(instance)
            run.on_close(instance.stop)
            if line:
                lines.append(line)
        return lines

    async def _finish(self, run: Run, outcome: Outcome, sinks: list[Any]) -> None:
        result = outcome.result
        if run.stop_signal is not None and outcome.exit_code != 128 + run.stop_signal:
            # The signal came after the last phase: the work is done, but the user stopped the
            # run before its record was written, and the record says so.
            outcome.exit_code = 128 + run.stop_signal
            result.partial, result.success = True, False
        summary = run.summary()
        result.tokens = summary
        duration = run.elapsed_seconds
        if run.ctx.output_file and not run.ctx.dry_run:
            from .files import write_atomic

            path = Path(run.ctx.output_file).expanduser()
            try:
                output: dict[str, Any] = {"result": result_dict(result),
                                          "token_summary": summary.to_dict()}
                if run.config.cli.output.include_logs:
                    output["logs"] = [e.to_dict() for e in run.bus.events]
                write_atomic(path, output)
            except OSError as exc:
                outcome.notes.append(f"could not write --output {path}: {exc}")
                outcome.exit_code = outcome.exit_code or EXIT_FAILED
        run.bus.flush()
        record = {
            "session_id": run.session_id,
            "created_at": iso_ms(run.started_at),
            "updated_at": iso_ms(utcnow()),
            "task": run.ctx.task,
            "status": session_status(run, outcome),
            "attempts": run.ctx.attempt,
            "summary": {
                # A resumed session's record counts every attempt's events.
                "total_events": len(run.bus.events) + (
                    checkpoint.events if (checkpoint := run.state.get("checkpoint")) else 0),
                "total_tokens": summary.total_tokens,
                "duration_seconds": round(duration, 3),
                "success": result.success,
                "exit_code": outcome.exit_code,
            },
            "token_summary": summary.to_dict(),
            "result": result_dict(result),
        }
        if run.stop_signal is not None:
            record["signal"] = signal.Signals(run.stop_signal).name
        if result.partial:
            record["partial_result"] = {"steps": {k: unstructure(v) for k, v in result.steps.items()},
                                        "output": result.output}
        failed = list(run.bus.storage_errors)
        cassette_failure = getattr(run.state.get("cassette"), "failure", None)
        if cassette_failure is not None:
            failed.append(cassette_failure)

        def close_sinks(which: list[Any]) -> None:
            for sink in which:
                try:
                    sink.close(run, record)
                except (OSError, StorageError) as exc:
                    failed.append(exc)
                except Exception as exc:  # noqa: BLE001
                    outcome.notes.append(f"log sink {sink.name} failed to close: {exc}")

        # Sinks that say their close is quick (the builtin files: a file written, renamed,
        # closed) are closed here; the others (an exporter's flush may wait on the network)
        # on a worker thread, so the other runs of this process (sigil batch) are not held
        # up. The builtin ones on a worker thread cost more than they saved: with 100
        # concurrent runs, the thread hop, the GIL hand-offs and six threads creating files
        # in one folder made each close ~0.5 ms of CPU instead of ~0.2, at the runs' ends.
        # Sinks with an ``aclose`` are awaited here: they may share work with other runs
        # ending at the same moment (the daily log writes their last lines together).
        waiting = [s for s in sinks if callable(getattr(s, "aclose", None))]
        quick = [s for s in sinks if s not in waiting
                 and getattr(s, "close_on_loop", False) is True]
        close_sinks(quick)
        for sink in waiting:
            try:
                await sink.aclose(run, record)
            except (OSError, StorageError) as exc:
                failed.append(exc)
            except Exception as exc:  # noqa: BLE001
                outcome.notes.append(f"log sink {sink.name} failed to close: {exc}")
        if len(quick) + len(waiting) < len(sinks):
            await asyncio.to_thread(close_sinks, [s for s in sinks
                                                  if s not in quick and s not in waiting])
        if failed:
            outcome.notes.append(_storage_failure_line(failed))
            outcome.exit_code = EXIT_STORAGE
        # Where the session went is what the sinks say (their optional ``path``), not a layout
        # the core assumes: a disabled or replaced sink changes it.
        paths = [str(s.path) for s in sinks if getattr(s, "path", None)]
        outcome.session_files = sorted(paths, key=lambda p: not p.endswith(".jsonl"))  # log first

    # ----------------------------------------------------------------- phases

    async def _phases(self, run: Run, agent: Agent | None) -> Outcome:
        ctx = run.ctx
        task = ctx.task
        host = self.host
        result = OrchestrationResult(session_id=ctx.session_id, success=False, task=task,
                                     provider=run.llm.provider_name)
        run.state["result"] = result
        # The first event says what the run is and which process runs it, so a session killed
        # hard (SIGKILL, power loss) can be told apart from one still running, and described.
        run.event("info", "cli", "initialize", "Execution initialized", metadata={
            "task_length": len(task), "budget": ctx.budget, "monitor_enabled": ctx.monitor,
            "provider": run.llm.provider_name, "agent": ctx.agent, "task": task,
            "pid": os.getpid(), "host": socket.gethostname(),
        })
        checkpoint = run.state.get("checkpoint")
        if checkpoint is not None:
            reused = checkpoint.reused()
            message = (f"Resuming session {ctx.session_id} (attempt {ctx.attempt}): reusing "
                       + (", ".join(k for k in ("route", "plan", "memory") if reused[k])
                          or "nothing")
                       + f" and {len(reused['steps'])} finished step(s); "
                       f"{checkpoint.used:,} tokens already used")
            run.event("info", "orchestrator", "resume", message,
                      metadata={"attempt": ctx.attempt, "reused": reused,
                                "tokens_before": checkpoint.used,
                                "previous_status": checkpoint.previous_status})
            self.notify(message)
        early_plan: asyncio.Task[Plan] | None = None
        try:
            contract = choose_contract(task, agent, host)
            validator = host.has_impl("sigil_validate")
            route, early_plan = await self._route_and_plan(
                run, task, agent, contract if validator else None)
            result.route, result.intent = route, route.intent
            if (ctx.dry_run and not agent and route.intent != "execute_task"
                    and not route.handler.startswith(handler_for_intent("execute_task"))
                    and host.has_impl("sigil_handle_intent")):
                # An intent handler takes this request (e.g. a direct answer): no plan to show.
                await self._drop_plan(run, early_plan, route)
                result.success = True
                result.output = {"route": unstructure(route), "path": route.handler,
                                 "plan": None, "contract": None,
                                 "estimated_tokens": STRATEGY_TOKEN_ESTIMATE["direct"]}
                self._complete(run, result)
                return Outcome(result, EXIT_OK, dry_run=True)
            if not ctx.dry_run and not agent:
                handled = await host.call_first("sigil_handle_intent", run=run, task=task,
                                                route=route)
                if handled is not None:
                    await self._drop_plan(run, early_plan, route)
                    handled.route = handled.route or route
                    handled.intent = handled.intent or route.intent
                    handled.provider = run.llm.provider_name
                    run.state["result"] = result = handled
                    self._complete(run, result)
                    return Outcome(result, EXIT_OK if handled.success else EXIT_FAILED)
            if contract is not None and not validator:
                run.event("info", "contracts", "validate_output",
                          f"No validator installed; contract {contract.name} not checked",
                          metadata={"skipped": True, "contract_name": contract.name})
                contract = None
            plan_task = early_plan or asyncio.create_task(
                self._plan(run, task, route, agent, contract))
            early_plan = None  # awaited below, like a plan started now
            memory_task = None
            if not ctx.dry_run:
                memory_task = asyncio.create_task(self._retrieve(run, task))
            try:
                plan = await plan_task
            except BaseException:
                if memory_task:
                    memory_task.cancel()
                    await asyncio.gather(memory_task, return_exceptions=True)
                raise
            result.plan = plan
            if ctx.dry_run:
                result.success = True
                result.output = {"route": unstructure(route), "path": "plan",
                                 "plan": unstructure(plan),
                                 "estimated_tokens": plan.estimated_tokens,
                                 "contract": contract.name if contract else None}
                self._complete(run, result)
                return Outcome(result, EXIT_OK, dry_run=True)
            memory = await memory_task if memory_task else None
            execution = await self._execute(run, task, plan, memory, agent, contract)
            output = execution.final_output
            result.steps = execution.step_results
            result.output = output
            exit_code = EXIT_OK
            if contract is None:
                run.event("info", "contracts", "validate_output",
                          "No contract applies to this task; validation skipped",
                          metadata={"skipped": True})
                result.success = execution.success
            else:
                validation, output = await self._validate(run, task, plan, execution, output,
                                                          memory, agent, contract)
                result.validation, result.output = validation, output
                result.steps = execution.step_results
                result.success = validation.success or contract.failure_strategy == "fallback"
                if not validation.success:
                    err = ContractError(
                        f"the output failed contract {contract.name} after {validation.attempt} "
                        f"attempt(s): {'; '.join(validation.problems)}",
                        context={"contract_name": contract.name})
                    level = "warning" if contract.failure_strategy == "fallback" else "error"
                    run.event(level, "contracts", "validate_output",
                              "Contract retries exhausted" + (
                                  "; delivering the best output (fallback)"
                                  if level == "warning" else ""),
                              error_info=ErrorInfo.from_exception(err))
                    if level == "error":
                        result.error = ErrorInfo.from_exception(err)
                        exit_code = EXIT_FAILED
            await self._extract(run, task, execution, result)
            self._complete(run, result)
            return Outcome(result, exit_code)
        except (RunStopped, asyncio.CancelledError) as exc:
            await self._drop_plan(run, early_plan, None)
            if run.stop_signal is not None:
                return self._interrupted(run, result)
            if isinstance(exc, asyncio.CancelledError):
                raise  # cancelled from outside (the caller's task): not ours to record
            return self._abort(run, result, SigilError(f"the run stopped ({exc.reason})"),
                               EXIT_FAILED, "Execution stopped")
        except Exception as exc:  # noqa: BLE001 - must not break the caller
            await self._drop_plan(run, early_plan, None)
            if run.stop_signal is not None:
                # Whatever a step raised while the run was being stopped, it was stopped.
                return self._interrupted(run, result)
            return self._failed(run, result, exc)

    def _failed(self, run: Run, result: OrchestrationResult, exc: Exception) -> Outcome:
        if isinstance(exc, BudgetExhaustedError):
            return self._abort(run, result, exc, EXIT_BUDGET,
                               "Token budget exhausted, aborting execution")
        if isinstance(exc, UsageError):
            # Bad input found by a phase (e.g. an agent name in the request): exit 2.
            return self._abort(run, result, exc, EXIT_USAGE, f"Invalid request: {exc.message}",
                               level="error")
        if isinstance(exc, SigilError):
            return self._abort(run, result, exc, EXIT_FAILED, f"Execution failed: {exc.message}")
        # An unexpected error still saves the session.
        return self._abort(run, result, exc, EXIT_FAILED,
                           f"Execution failed unexpectedly: {type(exc).__name__}: {exc}")

    def _interrupted(self, run: Run, result: OrchestrationResult) -> Outcome:
        assert run.stop_signal is not None
        name = signal.Signals(run.stop_signal).name
        last = next((e for e in reversed(run.bus.events)
                     if e.operation not in ("interrupt", "budget")), None)
        exc = RunInterruptedError(
            f"interrupted by {name}" + (" (Ctrl-C)" if name == "SIGINT" else ""),
            context={"signal": name,
                     "last_component": last.component if last else None,
                     "last_operation": last.operation if last else None})
        return self._abort(run, result, exc, 128 + run.stop_signal,
                           f"Execution interrupted by {name}; the partial result is saved",
                           level="error")

    def _abort(self, run: Run, result: OrchestrationResult, exc: BaseException, code: int,
               message: str, level: str = "critical") -> Outcome:
        done = run.state.get("step_results", {})
        result.steps = dict(done)
        result.partial = True
        result.success = False
        info = ErrorInfo.from_exception(exc, with_trace=not isinstance(exc, SigilError))
        context = dict(info.context or {})
        op_ctx = getattr(exc, "context", {}) or {}
        context.setdefault("last_component", op_ctx.get("last_component"))
        context.setdefault("last_operation", op_ctx.get("last_operation"))
        context["partial_result_available"] = bool(done)
        info.context = context
        info.recoverable = False
        result.error = info
        run.event(level, "orchestrator", context.get("last_operation") or "execute_plan",
                  message, error_info=info)
        self._complete(run, result)
        return Outcome(result, code)

    def _complete(self, run: Run, result: OrchestrationResult) -> None:
        summary = run.summary()
        run.event("info", "cli", "complete_execution",
                  "Execution completed" if result.success else "Execution finished with errors",
                  metadata={"success": result.success, "total_tokens": summary.total_tokens,
                            "duration_seconds": round(run.elapsed_seconds, 3),
                            "output_file": run.ctx.output_file, "llm_calls": summary.llm_calls},
                  duration_ms=round(run.elapsed_seconds * 1000, 3))

    async def _route(self, run: Run, task: str, agent: Agent | None) -> RouteDecision:
        checkpoint = run.state.get("checkpoint")
        if checkpoint is not None and checkpoint.route is not None:
            return cast("RouteDecision", checkpoint.route)
        async with run.phase("route"), run.operation("router", "route_request") as op:
            op.always_report_tokens = True  # a zero-token (fast path) decision says 0
            route = await self.host.call_first("sigil_route", run=run, task=task)
            if route is None:
                route = RouteDecision("execute_task", 0.5, handler_for_intent("execute_task"),
                                      strategy_for_complexity(0.5), "no router installed",
                                      "default")
            if agent is not None and route.intent != "execute_task":
                # Running a named agent is executing a task with it, whatever the wording.
                route = attrs.evolve(route, intent="execute_task",
                                     handler=handler_for_intent("execute_task"),
                                     source=f"{route.source}+agent")
            op.set_metadata(intent=route.intent, complexity=route.complexity,
                            handler=route.handler, strategy=route.reasoning_strategy,
                            source=route.source, rationale=route.rationale)
            return cast("RouteDecision", route)

    async def _route_and_plan(self, run: Run, task: str, agent: Agent | None,
                              contract: Contract | None
                              ) -> tuple[RouteDecision, asyncio.Task[Plan] | None]:
        """Route; and if the router has to ask the model, plan at the same time.

        Most routed requests are tasks to execute, and the planner does not need the route's
        answer (only its intent decides whether a plan is wanted at all): so while the
        router's call is in flight the plan is made speculatively, for a provisional
        ``execute_task`` route, and kept when the route agrees. When it does not (a question
        an intent handler answers), the plan's call was spent for nothing; it is finished and
        booked, and an event says it was not used. A fast (zero-call) route never speculates.
        """
        checkpoint = run.state.get("checkpoint")
        if checkpoint is not None and (checkpoint.route is not None
                                       or checkpoint.plan is not None):
            return await self._route(run, task, agent), None
        asked = asyncio.Event()
        preload = not run.ctx.dry_run and "replay_memory" not in run.state and not (
            checkpoint is not None and checkpoint.memory_done)

        def on_llm_call(request: Any) -> None:
            if request.component == "router":
                asked.set()

        run.state["on_llm_call"] = on_llm_call
        route_task = asyncio.create_task(self._route(run, task, agent))
        waiter = asyncio.create_task(asked.wait())
        try:
            await asyncio.wait({route_task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            run.state.pop("on_llm_call", None)
        early: asyncio.Task[Plan] | None = None
        if not route_task.done():
            provisional = RouteDecision(
                "execute_task", 0.5, handler_for_intent("execute_task"),
                strategy_for_complexity(0.5),
                "provisional: planned while the router asks the model", "speculative")
            early = asyncio.create_task(self._plan(run, task, provisional, agent, contract,
                                                   speculative=True))
            if preload:
                # The run now waits for the model: load the memory embedder meanwhile, once
                # the plan's request is on its way too (finding the embedder costs CPU time).
                # With no call to wait for, retrieval (right after routing) loads it itself.
                asyncio.get_running_loop().call_soon(preload_embedder, run.config, run)
        try:
            route = await route_task
        except BaseException:
            await self._drop_plan(run, early, None)
            raise
        return route, early

    async def _drop_plan(self, run: Run, early: asyncio.Task[Plan] | None,
                         route: RouteDecision | None) -> None:
        """A speculative plan the run does not use: let its call finish (it is billed
        either way, and its real usage is booked) and say so; cancelled when the run fails."""
        if early is None:
            return
        if route is None:
            early.cancel()
        await asyncio.gather(early, return_exceptions=True)
        if route is not None:
            run.event("info", "planner", "create_plan",
                      f"Speculative plan not used: the request went to {route.handler}",
                      metadata={"speculative": True, "used": False, "intent": route.intent})

    async def _plan(self, run: Run, task: str, route: RouteDecision, agent: Agent | None,
                    contract: Contract | None = None, *, speculative: bool = False) -> Plan:
        checkpoint = run.state.get("checkpoint")
        if checkpoint is not None and checkpoint.plan is not None:
            return cast("Plan", checkpoint.plan)
        async with run.phase("plan"), run.operation(
                "planner", "create_plan", {"speculative": True} if speculative else None) as op:
            feedback = None
            for attempt in (1, 2):
                plan = await self.host.call_first("sigil_plan", run=run, task=task, route=route,
                                                  feedback=feedback, contract=contract)
                if plan is None:
                    raise PlanError("no planner is installed (the builtin planner is disabled?)",
                                    recoverable=False)
                renamed = normalise_plan(plan)
                if renamed:
                    op.set_metadata(renamed_steps=renamed)
                try:
                    validate_plan(plan)
                    break
                except PlanError as exc:
                    if attempt == 2:
                        raise PlanError(f"the plan was rejected twice: {exc.message}",
                                        recoverable=False) from None
                    op.event("warning", f"Plan rejected, re-planning once: {exc.message}",
                             error_info=ErrorInfo.from_exception(exc))
                    feedback = exc.message
            plan.id = plan.id or f"plan_{uuid.uuid4().hex[:12]}"
            assign_strategies(run, plan, agent)
            for step in plan.steps:
                step.estimated_tokens = STRATEGY_TOKEN_ESTIMATE.get(step.reasoning_strategy, 1500)
            plan.estimated_tokens = estimate_plan_tokens(plan)
            op.set_metadata(plan_id=plan.id, step_count=len(plan.steps),
                            estimated_tokens=plan.estimated_tokens,
                            steps=[s.name for s in plan.steps],
                            strategies={s.name: s.reasoning_strategy for s in plan.steps},
                            plan=unstructure(plan))  # the journal is the checkpoint
            return cast("Plan", plan)

    def _memory_installed(self, run: Run, hook: str) -> bool:
        """A plugin implements the memory phase, or registers a backend for the builtin one."""
        return (any(not i.plugin_name.startswith("builtin.") for i in self.host.phase_impls(hook))
                or bool(run.registry("memory_backends")))

    async def _retrieve(self, run: Run, task: str) -> MemoryContext | None:
        checkpoint = run.state.get("checkpoint")
        if checkpoint is not None and checkpoint.memory_done:
            return cast("MemoryContext | None", checkpoint.memory)
        if "replay_memory" in run.state:
            return cast("MemoryContext | None", run.state["replay_memory"])  # a replay sees what the recorded run saw
        async with run.phase("retrieve"):
            if not self._memory_installed(run, "sigil_retrieve"):
                run.event("info", "memory", "retrieve_context",
                          "No memory backend installed; retrieval skipped",
                          metadata={"skipped": True})
                return None
            try:
                async with run.operation("memory", "retrieve_context") as op:
                    memory = await self.host.call_first("sigil_retrieve", run=run, task=task)
                    if memory is not None:
                        op.set_metadata(memory=unstructure(memory))
                    if "cassette" in run.state:
                        run.state["cassette"].record_memory(
                            unstructure(memory) if memory is not None else None)
                    return cast("MemoryContext | None", memory)
            except BudgetExhaustedError:
                raise
            except SigilError as exc:
                if not exc.recoverable:
                    raise
                return None  # the failure event says why; the run goes on without memory

    async def _execute(self, run: Run, task: str, plan: Plan, memory: MemoryContext | None,
                       agent: Agent | None, contract: Contract | None) -> ExecutionResult:
        final = final_step(plan)
        schema = self._final_schema(run, contract)
        tools = sorted(run.registry("tools"))
        checkpoint = run.state.get("checkpoint")
        finished = dict(checkpoint.steps) if checkpoint is not None else {}
        done: dict[str, StepResult] = dict(finished)
        run.state["step_results"] = done
        run.state["final_step"] = final.name

        async def execute(step: PlanStep, results: dict[str, StepResult]) -> StepResult:
            context = StepContext(
                task=task, step=step, agent=agent, memory=memory,
                dependency_outputs={d: results[d].output for d in step.dependencies},
                output_schema=schema if step.name == final.name else None,
                tools=tools,
            )
            res = await self._reason(run, step, context)
            if step.name == final.name:
                self._unfold(run, res)
            done[step.name] = res
            run.event("info", "orchestrator", "execute_step", f"Step completed: {step.name}",
                      metadata={"step_name": step.name, "step_strategy": res.strategy,
                                "strategy_reason": step.strategy_reason,
                                "success": res.success, "step_tokens": res.tokens_used.total_tokens,
                                "result": unstructure(res)})
            return res

        async with run.phase("execute"), run.operation(
                "orchestrator", "execute_plan", {"plan_id": plan.id}) as op:
            def on_failure(exc: BaseException) -> float:
                # One step failed: the run ends. Steps whose calls are in flight may finish
                # (their tokens are billed anyway), but nothing new starts.
                run.stop("budget" if isinstance(exc, BudgetExhaustedError) else "failed")
                return self.config.llm.stop_grace_s

            results = await run_dag(plan, execute, on_failure=on_failure, finished=finished)
            ordered = {name: results[name] for name in topological_order(plan)}
            total = TokenUsage.zero()
            for r in ordered.values():
                total = total + r.tokens_used
            op.set_metadata(steps_executed=len(ordered),
                            all_succeeded=all(r.success for r in ordered.values()),
                            steps_total_tokens=total.total_tokens)
            return ExecutionResult(plan.id, ordered, total, final.name,
                                   remembered=run.state.get("remembered"))

    def _final_schema(self, run: Run, contract: Contract | None) -> dict[str, Any] | None:
        """The final step's output schema: the contract's, with the facts worth remembering
        folded in when this run extracts memories (the extract phase then needs no call of
        its own, and nothing waits for one after the last step)."""
        if contract is None:
            return None
        schema = contract_schema(contract)
        if run.ctx.dry_run or not self._memory_installed(run, "sigil_extract"):
            return schema
        from .memory.phases import extraction_wanted, fold_facts

        if not extraction_wanted(run.config):
            return schema
        return fold_facts(schema) or schema

    @staticmethod
    def _unfold(run: Run, res: StepResult) -> None:
        """Take the folded facts out of the final step's answer (the contract never sees
        them); the latest attempt's facts are the ones the extract phase stores."""
        from .memory.phases import unfold_facts

        output, facts = unfold_facts(res.output)
        if facts is not None:
            res.output = output
            run.state["remembered"] = {"facts": facts, "model": res.tokens_used.model}

    async def _reason(self, run: Run, step: PlanStep, context: StepContext) -> StepResult:
        res = await self.host.call_first("sigil_reason", run=run, step=step, context=context)
        if res is None:
            raise PlanError(f"no reasoning plugin handled step {step.name!r}", recoverable=False)
        return cast("StepResult", res)

    async def _validate(self, run: Run, task: str, plan: Plan, execution: ExecutionResult,
                        output: Any, memory: MemoryContext | None, agent: Agent | None,
                        contract: Contract) -> tuple[Any, Any]:
        max_attempts = 1 + contract.max_retries
        attempt = 1
        final = plan.step(execution.final_step or final_step(plan).name)
        while True:
            async with run.phase("validate"), run.operation(
                    "contracts", "validate_output",
                    {"contract_name": contract.name, "attempt": attempt}) as op:
                validation = await self.host.call_first("sigil_validate", run=run, output=output,
                                                        contract=contract, attempt=attempt)
                op.set_metadata(validation_passed=validation.success,
                                deliverables_checked=len(contract.deliverables),
                                deliverables_passed=len(validation.passed_deliverables))
                if validation.placeholders:
                    # Shape only: a placeholder passes no real check (see contracts.py).
                    op.set_metadata(offline_placeholders=validation.placeholders)
                    op.event("info", "Contract checked on offline placeholders: "
                             + ", ".join(validation.placeholders),
                             metadata={"offline_placeholders": validation.placeholders})
                will_retry = (not validation.success and attempt < max_attempts
                              and contract.failure_strategy != "fail")
                if not validation.success:
                    code = "CONTRACT_002" if validation.missing_deliverables else "CONTRACT_001"
                    what = (f"Missing: {validation.missing_deliverables}"
                            if validation.missing_deliverables else "; ".join(validation.problems))
                    op.event("warning", "Contract validation failed" + (
                        ", will retry" if will_retry else ""),
                        metadata={"attempt": attempt, "max_attempts": max_attempts,
                                  "will_retry": will_retry, "contract_name": contract.name,
                                  "passed": validation.passed_deliverables,
                                  "failed": validation.problems},
                        error_info=ErrorInfo("ContractValidationError", what, code,
                                             recoverable=will_retry,
                                             retry_after_ms=0 if will_retry else None))
                if will_retry:
                    feedback = await run.llm.generate(
                        f"The output has these problems: {validation.problems}\n\n"
                        f"Contract requirements:\n{describe_contract(contract)}\n\n"
                        f"Current output:\n{_json(output)}\n\n"
                        "Provide specific instructions to fix them.",
                        purpose="contract_feedback", component="contracts", max_tokens=400,
                        hints={"task": task, "problems": validation.problems,
                               "contract": contract.name},
                    )
                    validation.feedback = feedback.text
            if validation.success or not will_retry:
                return validation, output
            attempt += 1
            async with run.phase("validate"), run.operation(
                    "orchestrator", "retry_step", {"step_name": final.name, "attempt": attempt}):
                deps = {d: execution.step_results[d].output for d in final.dependencies}
                context = StepContext(task=task, step=final, agent=agent, memory=memory,
                                      dependency_outputs=deps, feedback=validation.feedback,
                                      output_schema=self._final_schema(run, contract),
                                      attempt=attempt,
                                      tools=sorted(run.registry("tools")))
                res = await self._reason(run, final, context)
                self._unfold(run, res)
                execution.remembered = run.state.get("remembered")
                execution.step_results[final.name] = res
                output = res.output

    async def _extract(self, run: Run, task: str, execution: ExecutionResult,
                       result: OrchestrationResult) -> None:
        async with run.phase("extract"):
            if run.state.get("replay"):
                run.event("info", "memory", "extract_memories",
                          "Replay: memory extraction skipped (a replay writes no memories)",
                          metadata={"skipped": True})
                return
            if not self._memory_installed(run, "sigil_extract"):
                run.event("info", "memory", "extract_memories",
                          "No memory backend installed; extraction skipped",
                          metadata={"skipped": True})
                return
            try:
                async with run.operation("memory", "extract_memories"):
                    await self.host.call_first("sigil_extract", run=run, task=task,
                                               result=execution, output=result.output)
            except BudgetExhaustedError:
                raise
            except SigilError as exc:
                if not exc.recoverable:
                    raise


def _storage_failure_line(errors: list[Any]) -> str:
    """One line for every file a run could not write: the first one named, the others counted."""
    def where(exc: Any) -> str:
        if isinstance(exc, StorageError):
            return exc.message
        return f"cannot write {exc.filename or 'a session file'}: {exc.strerror or exc}"

    more = len(errors) - 1
    return (f"Error: {where(errors[0])} [SYSTEM_004]"
            + (f" (and {more} more session file{'s' if more > 1 else ''})" if more else "")
            + "; the session record is incomplete: free some space and run again (exit 4)")


class _StopGuard:
    """Turns signals into a clean stop of one run: the first stops new work and arms a
    watchdog that cancels what is still running after the grace period; the next one cancels
    at once. Calls cancelled this way are booked at their reservation (see the gateway)."""

    def __init__(self, run: Run, grace_s: float) -> None:
        self.run = run
        self.grace_s = grace_s
        self.task: asyncio.Task[Outcome] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._done = False

    def on_signal(self, signum: int, count: int) -> None:
        run = self.run
        first = run.stop_signal is None
        run.stop("interrupted", signum=signum)
        if self._done:
            return  # the phases are over: the record will say interrupted, nothing to cancel
        if first:
            name = signal.Signals(signum).name
            run.event("warning", "orchestrator", "interrupt",
                      f"Received {name}: stopping; calls in flight get up to "
                      f"{self.grace_s:g} s to finish (again to stop at once)",
                      metadata={"signal": name}, parent_operation_id=run._root.operation_id)
            self._watchdog = asyncio.get_running_loop().call_later(self.grace_s, self._cancel)
        else:
            self._cancel()

    def _cancel(self) -> None:
        if self.task is not None and not self.task.done() and not self._done:
            self.task.cancel()

    def disarm(self) -> None:
        self._done = True
        if self._watchdog is not None:
            self._watchdog.cancel()


def session_status(run: Run, outcome: Outcome) -> str:
    """ok | failed | budget_exhausted | interrupted (what `sigil sessions list` shows)."""
    if run.stop_signal is not None:
        return "interrupted"
    if outcome.result.success:
        return "ok"
    return "budget_exhausted" if outcome.exit_code == EXIT_BUDGET else "failed"


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, default=str) if not isinstance(value, str) else value


def result_dict(result: OrchestrationResult) -> dict[str, Any]:
    data = unstructure(attrs.evolve(result, tokens=None))
    data.pop("tokens", None)
    return cast("dict[str, Any]", data)
