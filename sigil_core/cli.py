"""The ``sigil`` command line.

Start-up stays fast: this module imports only click; plugins, the data model and the
orchestrator are imported when a command runs. Plugin commands (``sigil_register_commands``)
are added the first time click lists or looks up commands.

Exit codes: 0 success, 1 the run failed, 2 bad input (usage, config, arguments),
3 token budget exhausted, 4 the session record could not be written (disk full),
130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import itertools
import json
import sys
from typing import Any, NoReturn, cast

import click

EXIT_USAGE = 2


#: Set by commands run with ``--format json``: errors then go to stdout as JSON too.
_json_errors = False


def _error_json(message: str, exit_code: int, kind: str = "UsageError") -> str:
    return json.dumps({"error": {"type": kind, "message": message, "exit_code": exit_code}})


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    if _json_errors:
        click.echo(_error_json(message, code, "Interrupted" if code == 130 else "UsageError"))
    sys.exit(code)


def _wants_json(args: list[str]) -> bool:
    return "--format=json" in args or any(
        a == "--format" and b == "json" for a, b in itertools.pairwise(args))


class JsonErrorsCommand(click.Command):
    """A command with ``--format json`` whose stdout stays JSON even for a usage error found
    while parsing its arguments (click reports those before the command runs)."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        wants_json = _wants_json(list(args))
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            if wants_json:
                click.echo(_error_json(exc.format_message(), exc.exit_code))
            raise


_HOST: Any = None
#: Set by a finished ``orchestrate`` to its ``cli.worker`` settings: the ``sigil`` entry point
#: (launch.py) then starts a resident worker for the next runs (worker.auto_start).
worker_wanted: Any = None


def get_host() -> Any:
    """The process's plugin host, loaded once (disabled plugins from config and env)."""
    global _HOST
    if _HOST is None:
        from .files import disabled_plugins
        from .plugins import PluginHost

        disabled = disabled_plugins()
        _HOST = PluginHost(disabled=disabled).load()
    return _HOST


def get_config() -> Any:
    from .config import load_config
    from .errors import ConfigError

    try:
        config = load_config()
    except ConfigError as exc:
        _fail(f"{exc} [SYSTEM_002]")
    if config.sections:
        _warn_unknown_sections(config)
    return config


def _warn_unknown_sections(config: Any) -> None:
    """A top-level key that neither the core nor a loaded plugin reads is most likely a typo."""
    import difflib

    from .config import KNOWN_SECTIONS

    known = set(KNOWN_SECTIONS) | get_host().config_sections()
    where = config.path or "the config file"
    for key in sorted(set(config.sections) - known):
        close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
        hint = (f"did you mean '{close[0]}'?" if close
                else f"known sections: {', '.join(sorted(KNOWN_SECTIONS))} and those of plugins")
        click.echo(f"warning: {where}: unknown top-level key '{key}' (no core setting or "
                   f"installed plugin reads it; it is ignored): {hint}", err=True)


def apply_choices(host: Any, config: Any, flags: tuple[str, ...] = ()) -> None:
    """Plugin choices: config `plugins.use`, then SIGIL_USE, then --use flags (last wins).
    Also hands the config to the host, for the registration hooks."""
    import os

    from .errors import UsageError
    from .plugins import parse_choices

    host.configure(config)
    try:
        host.choose(config.plugins.use)
        host.choose(parse_choices(os.environ.get("SIGIL_USE", "")))
        host.choose(parse_choices(flags))
    except UsageError as exc:
        _fail(str(exc))


class SigilGroup(click.Group):
    """Adds plugin commands lazily, so `sigil --help` costs one plugin scan and no heavy import."""

    _plugins_added = False

    def _add_plugin_commands(self) -> None:
        if not self._plugins_added:
            self._plugins_added = True
            get_host().register_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is None:
            self._add_plugin_commands()
            cmd = super().get_command(ctx, name)
        return cmd


@click.group(cls=SigilGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sigil-core", prog_name="sigil")
def cli() -> None:
    """Sigil: route, plan, reason, validate and remember, with every token accounted for.

    Start with `sigil orchestrate "Qualify this lead: John Smith, CEO at Acme Corp"`. With no
    API key set, the builtin offline model answers (deterministic, no network).

    Configuration: ~/.sigil/config.yaml (or $SIGIL_HOME/config.yaml, or $SIGIL_CONFIG);
    environment variables SIGIL_LOG_LEVEL, SIGIL_LOG_FILE, SIGIL_TOKEN_BUDGET,
    SIGIL_MONITOR_PORT, SIGIL_BUFFER_SIZE, SIGIL_FLUSH_INTERVAL override it, and flags override
    both.
    """


# --------------------------------------------------------------------------- orchestrate


@cli.command(cls=JsonErrorsCommand)
@click.argument("task", type=str, required=False)
@click.option("--agent", "-a", default=None, help="Run this agent (see `sigil agents list`).")
@click.option("--budget", "-b", type=int, default=None,
              help="Token budget limit [default: SIGIL_TOKEN_BUDGET, config, or 256000].")
@click.option("--monitor", "-m", is_flag=True,
              help="Stream events to a live monitor (a server it starts stays up while idle "
                   "for a while; `sigil monitor stop` ends it).")
@click.option("--verbose", "-v", is_flag=True,
              help="Print every event on stderr (by default, outside a terminal, only warnings "
                   "and errors).")
@click.option("--output", "-o", default=None, type=click.Path(dir_okay=False),
              help="Write the result and token summary to this JSON file.")
@click.option("--session", "-s", default=None,
              help="Session ID (letters, digits, _ and -; generated if not given).")
@click.option("--dry-run", is_flag=True,
              help="Route and plan only: print the plan as a table (steps, dependencies, "
                   "strategy, estimated tokens, contract), or the direct-answer path.")
@click.option("--provider", default=None, help="LLM provider by name (default: best available).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="How to print the result on stdout; with json, errors are JSON too "
                   "({\"error\": {...}}).")
@click.option("--use", "use", multiple=True, metavar="PHASE=PLUGIN",
              help="Which plugin runs a phase when several implement it (repeatable).")
@click.option("--resume", "resume", default=None, metavar="SESSION",
              help="Continue SESSION (interrupted, out of budget, crashed or killed) instead of "
                   "giving a TASK: finished work is reused; --budget is the session's new total.")
def orchestrate(task: str | None, agent: str | None, budget: int | None, monitor: bool,
                verbose: bool, output: str | None, session: str | None, dry_run: bool,
                provider: str | None, fmt: str, use: tuple[str, ...],
                resume: str | None = None) -> None:
    """Execute TASK through the Sigil orchestration pipeline.

    Phases: initialize, route, plan, retrieve memories, execute the plan's steps (independent
    steps concurrently), validate against the contract (retrying with feedback), extract
    memories, complete. Events go to outputs/sessions/<session>.jsonl and .json and to
    outputs/logs/<date>.jsonl.

    Exit codes: 0 success, 1 the run failed, 2 bad input, 3 token budget exhausted,
    4 the session record could not be written (e.g. disk full), 130 interrupted by Ctrl-C,
    143 by SIGTERM (the session is saved with status interrupted).
    """
    import asyncio

    from .display import Display
    from .errors import UsageError
    from .orchestrator import Orchestrator, RunOptions

    global _json_errors
    _json_errors = fmt == "json"
    if resume is not None and task is not None:
        _fail("give either a TASK or --resume SESSION, not both")
    if resume is None and task is None:
        _fail("missing TASK: say what Sigil should do, e.g. sigil orchestrate \"Qualify this "
              "lead: ...\" (or --resume SESSION to continue one)")
    config = get_config()
    host = get_host()
    apply_choices(host, config, use)
    if not dry_run and _no_sdk_to_import(config, host, provider):
        from .memory import preload_embedder

        # The memory model loads beside the rest of start-up (see preload_embedder). Not
        # with a provider whose SDK is being imported: that import is what the first request
        # waits for, and these imports would slow it (anthropic's first request +235 ms);
        # the run then loads the model while its first request is in flight.
        host.configure(config)
        if preload_embedder(config, host, import_here=True) is not None:
            # While it loads in native code, import the checker of structured answers, which
            # the first of them would otherwise import on the run's critical path
            # (fastjsonschema, ~3 ms; jsonschema, ~60 ms of CPU, is only imported for an
            # answer that fails that check: see schema.parse_structured).
            import fastjsonschema  # noqa: F401
    display = Display(verbose=verbose, budget=budget or config.budget.total)
    orch = Orchestrator(config, host, listeners=[display.on_event], notify=display.note)
    # With --resume and no TASK, the resumed session brings its task back.
    options = RunOptions(task=task or "", agent=agent, budget=budget, monitor=monitor, verbose=verbose,
                         output=output, session=session, dry_run=dry_run, provider=provider,
                         resume=resume)
    from . import interrupts
    from .launch import start_up_done

    start_up_done()
    try:
        with display:
            outcome = asyncio.run(orch.run(options))
    except UsageError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    display.print_outcome(outcome, fmt)
    global worker_wanted
    worker_wanted = config.cli.worker  # the entry point starts one as it exits (launch.py)
    # A signal that came after the session record was written changes only the exit code.
    sys.exit(interrupts.exit_code(outcome.exit_code))


def _no_sdk_to_import(config: Any, host: Any, provider: str | None) -> bool:
    """Whether the run's provider has nothing to import first (no ``prepare()``: the offline
    model); False when it does, or cannot be chosen (the run reports that)."""
    from .orchestrator import choose_provider

    try:
        chosen = choose_provider(config, host, provider)
    except Exception:  # noqa: BLE001 - the run chooses again and reports it
        return False
    return not callable(getattr(chosen, "prepare", None))


# --------------------------------------------------------------------------- replay


@cli.command("replay")
@click.argument("session_id")
@click.option("--strict", is_flag=True,
              help="Fail on the first request with no recorded answer, showing how it differs "
                   "from the nearest recorded one (a changed prompt shows up this way).")
def replay_command(session_id: str, strict: bool) -> None:
    """Re-run a recorded session offline from its cassette and compare it with the original.

    The cassette (outputs/sessions/SESSION_ID.cassette.jsonl, recorded by default for real
    providers) answers every LLM call and tool call: no network, no memories written. The
    replay is a new session; its route, plan, step outputs, contract result and final output
    are compared with the original's. Exit 0 when identical, 1 when not (or, with --strict,
    when a request had no recorded answer), 2 for a missing or unreadable cassette.
    """
    import asyncio

    from .errors import UsageError
    from .replay import Cassette, cassette_path, compare, replay
    from .sessions import _ID

    if not _ID.match(session_id):
        _fail(f"invalid session id {session_id!r}")
    config = get_config()
    host = get_host()
    apply_choices(host, config)
    folder = config.outputs_dir / "sessions"
    try:
        cassette = Cassette.load(cassette_path(folder, session_id))
        done = asyncio.run(replay(cassette, config, host, strict=strict))
    except UsageError as exc:
        _fail(str(exc))
    if done.mismatches:
        click.echo(f"Error: replay of {session_id}: {done.mismatches[0].describe()}", err=True)
        if strict:
            sys.exit(1)
    original_path = folder / f"{session_id}.json"
    replayed = json.loads((folder / f"{done.session_id}.json").read_text(encoding="utf-8"))
    try:
        original = json.loads(original_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        # None (a run stopped hard), or one a power loss left empty: its journal is the
        # session, and the replay above ran from its cassette all the same.
        why = ("no .json record" if not original_path.exists()
               else f"an unreadable .json record ({exc})")
        click.echo(f"Replayed {session_id} as {done.session_id} (the original has {why} to "
                   "compare with)")
        sys.exit(1 if done.mismatches else done.outcome.exit_code)
    problems = compare(original, replayed)
    steps = len((replayed.get("result") or {}).get("steps") or {})
    if problems or done.mismatches:
        for problem in problems:
            click.echo(f"- {problem}")
        click.echo(f"Replay of {session_id} ({done.session_id}) differs from the original")
        sys.exit(1)
    click.echo(f"Replay of {session_id} ({done.session_id}): identical route, plan, {steps} step "
               "outputs, contract result and final output")


# --------------------------------------------------------------------------- route


@cli.command()
@click.argument("text", type=str)
@click.option("--provider", default=None, help="LLM provider by name.")
def route(text: str, provider: str | None) -> None:
    """Route TEXT and print the decision (intent, complexity, strategy) as JSON."""
    import asyncio

    from .errors import UsageError
    from .model import ExecutionContext, unstructure, utcnow
    from .orchestrator import choose_provider
    from .run import Run

    if not text.strip():
        _fail("the text to route is empty")
    config = get_config()
    host = get_host()
    apply_choices(host, config)

    async def go() -> dict[str, Any]:
        prov = choose_provider(config, host, provider)
        ctx = ExecutionContext("route", "route", text, config.budget.total, utcnow())
        run = Run(ctx, config, host, prov)
        async with run.operation("router", "route_request"):
            decision = await host.call_first("sigil_route", run=run, task=text)
        summary = run.summary()
        return {**unstructure(decision), "tokens_used": summary.total_tokens,
                "llm_calls": summary.llm_calls, "provider": prov.name}

    try:
        click.echo(json.dumps(asyncio.run(go()), indent=2))
    except UsageError as exc:
        _fail(str(exc))


# --------------------------------------------------------------------------- plugins


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--check", is_flag=True,
              help="Also call every registration hook: what each plugin registered, and the "
                   "objects dropped for not fitting their protocol or losing a name conflict.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool, check: bool) -> None:
    """List plugins: name, distribution, version, hooks and status (active/failed/disabled),
    with what an active plugin says of its state (e.g. "active (idle: not configured)").

    `sigil plugins show NAME` details one plugin."""
    if ctx.invoked_subcommand is not None:
        return
    from .files import config_file_data

    host = get_host()
    if check:
        _build_registries(host)
    notes = host.status_notes(config_file_data())
    if as_json:
        click.echo(json.dumps([{**r.as_dict(), "note": notes.get(r.name)} for r in host.records],
                              indent=2))
        return
    rows = [("NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS")]
    for r in host.records:
        hooks = ", ".join(h.replace("sigil_", "") for h in r.hooks)
        status = r.status if r.status != "failed" else f"failed: {r.error}"
        if r.name in notes and r.status == "active":
            status = f"active ({notes[r.name]})"
        if r.problems:
            status += f" ({len(r.problems)} problem{'s' if len(r.problems) > 1 else ''})"
        rows.append((r.name, r.distribution, r.version, status, hooks))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(c.ljust(widths[i]) for i, c in enumerate(row[:4])) + "  " + row[4])
    for r in host.records:
        for problem in r.problems:
            click.echo(f"  {r.name}: {problem}")


def _build_registries(host: Any) -> None:
    from .plugins import REGISTRY_KINDS

    apply_choices(host, get_config())
    for kind in REGISTRY_KINDS:
        host.registry(kind)


@plugins.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def plugins_show(name: str, as_json: bool) -> None:
    """What plugin NAME registered (strategies, tools, providers, contracts, sinks, transports,
    commands...), the hooks it implements, and its problems."""
    host = get_host()
    record = host.record(name)
    if record is None:
        _fail(f"no plugin named {name!r}; `sigil plugins` lists them: "
              + ", ".join(r.name for r in host.records))
    _build_registries(host)
    commands = _commands_of(host, name)
    if commands:
        record.registered["commands"] = commands
    if as_json:
        click.echo(json.dumps(record.as_dict(), indent=2))
        return
    click.echo(f"{record.name}  ({record.distribution} {record.version}, {record.status})")
    if record.error:
        click.echo(f"  error: {record.error}")
    click.echo("  hooks: " + (", ".join(record.hooks) or "none"))
    for kind, names in sorted(record.registered.items()):
        click.echo(f"  {kind}: {', '.join(names)}")
    for problem in record.problems:
        click.echo(f"  problem: {problem}")


def _commands_of(host: Any, name: str) -> list[str]:
    """The top-level commands plugin NAME adds (its sigil_register_commands on a scratch group)."""
    scratch = click.Group()
    for impl in host.pm.hook.sigil_register_commands.get_hookimpls():
        if impl.plugin_name == name:
            try:
                impl.function(cli=scratch)
            except Exception:  # noqa: BLE001 - reported by register_commands already
                return []
    return sorted(scratch.commands)


@cli.group("plugin")
def plugin_group() -> None:
    """Write new plugins."""


@plugin_group.command("new")
@click.argument("kind", type=click.Choice(["strategy", "memory", "sink", "transport", "provider",
                                           "tool"]))
@click.argument("name")
@click.option("--dir", "folder", default=None, type=click.Path(file_okay=False),
              help="Where to write it [default: ./sigil-NAME].")
def plugin_new(kind: str, name: str, folder: str | None) -> None:
    """Write a plugin package to start from: pyproject (entry point in the `sigil` group, a
    `test` extra), the hooks, the implementation, its config section, a README and tests that
    pass as written. Then: `pip install -e DIR[test]` and `python -m pytest DIR/tests`."""
    from pathlib import Path

    from .scaffold import write

    target = Path(folder or f"sigil-{name.replace('_', '-')}")
    try:
        files = write(kind, name, target)
    except (ValueError, FileExistsError) as exc:
        _fail(str(exc))
    click.echo(f"Wrote the {kind} plugin {name!r} in {target}/ ({len(files)} files). Next:\n"
               f"  pip install -e '{target}[test]'\n  python -m pytest {target}/tests\n"
               f"  sigil plugins show {name}")


# --------------------------------------------------------------------------- sessions


@cli.group()
def sessions() -> None:
    """Inspect recorded sessions in the outputs directory."""


@sessions.command("list")
@click.option("--limit", default=20, show_default=True, help="How many (newest first).")
@click.option("--outputs", "outputs", default=None, metavar="DIR",
              type=click.Path(file_okay=False),
              help="The outputs folder to read [default: SIGIL_OUTPUTS_DIR, config, or "
                   "./outputs of the current folder].")
@click.option("--json", "as_json", is_flag=True, help="Print the sessions as a JSON array.")
def sessions_list(limit: int, outputs: str | None, as_json: bool) -> None:
    """List sessions: id, start, status, tokens, task.

    Sessions are written to ./outputs of the folder a run starts in (unlike memory and agents,
    which live in SIGIL_HOME): point elsewhere with --outputs DIR or SIGIL_OUTPUTS_DIR.
    """
    from pathlib import Path

    from .sessions import list_sessions

    folder = (Path(outputs) if outputs else get_config().outputs_dir).expanduser() / "sessions"
    items = list_sessions(folder)[:limit]
    if as_json:
        click.echo(json.dumps(items, indent=2, default=str))
        return
    where = folder.resolve()
    if not items:
        click.echo(f"No sessions in {where}. Sessions are written to ./outputs of the folder a "
                   "run starts in: use --outputs DIR or SIGIL_OUTPUTS_DIR to look elsewhere.")
        return
    from .tables import print_table, shorten, table

    t = table("session", "started (UTC)", "status", "tokens", "task", right=(3,), wrap=(4,))
    for item in items:
        t.add_row(item["session_id"], item["created_at"][:19].replace("T", " "), item["status"],
                  f"{item['total_tokens']:,}", shorten(item["task"], 120))
    print_table(t)
    click.echo(f"{len(items)} of the sessions in {where} (newest first; --outputs DIR or "
               "SIGIL_OUTPUTS_DIR to look elsewhere).")


@sessions.command("resume")
@click.argument("session_id")
@click.option("--budget", "-b", type=int, default=None,
              help="The session's new total budget (tokens already spent count against it).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="How to print the result on stdout.")
@click.pass_context
def sessions_resume(ctx: click.Context, session_id: str, budget: int | None, fmt: str) -> None:
    """Continue a session that was interrupted, ran out of budget, crashed or was killed
    (the same as `sigil orchestrate --resume SESSION_ID`)."""
    ctx.invoke(orchestrate, task=None, agent=None, budget=budget, monitor=False, verbose=False,
               output=None, session=None, dry_run=False, provider=None, fmt=fmt, use=(),
               resume=session_id)


@sessions.command("show")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="Print the raw events as JSON lines.")
def sessions_show(session_id: str, as_json: bool) -> None:
    """Show a session's events as a tree of operations with their tokens."""
    from .errors import UsageError
    from .sessions import describe_unfinished, load_events, render_tree

    config = get_config()
    folder = config.outputs_dir / "sessions"
    try:
        events = load_events(folder, session_id)
    except UsageError as exc:
        _fail(str(exc))
    if as_json:
        for e in events:
            click.echo(json.dumps(e))
        return
    header = describe_unfinished(folder, session_id)
    if header:
        click.echo(header)
    click.echo(render_tree(events))


def _add_batch() -> None:
    from .batch_cli import batch

    cli.add_command(batch)


_add_batch()


# --------------------------------------------------------------------------- worker


@cli.group()
def worker() -> None:
    """A resident worker that keeps the providers' SDKs imported (Linux).

    `import anthropic` alone takes about two seconds of CPU. With a worker started for this
    SIGIL_HOME, each `sigil orchestrate` is forked from it, warm: the same run, with your
    folder, environment, terminal, Ctrl-C and exit code, without importing the SDK again.
    It serves only the Python it runs on, stops serving (and exits) when Sigil
    or a plugin changes on disk, and exits after --idle-timeout without a run.
    A `sigil orchestrate` that ran without one starts one as it exits, unless the CI variable
    is set, cli.worker.auto_start is false or SIGIL_WORKER_AUTO_START=0.
    SIGIL_NO_WORKER=1 makes a command ignore workers.
    """


@worker.command("start")
@click.option("--idle-timeout", type=click.FloatRange(min=1), default=1800, show_default=True,
              help="Seconds without a run after which the worker exits.")
def worker_start(idle_timeout: float) -> None:
    """Start the worker for this SIGIL_HOME (in the background)."""
    import os
    import subprocess

    from . import worker as resident

    if not resident.supported():
        _fail("the sigil worker needs Linux (fork and abstract Unix sockets)")
    home = resident._home()
    running = resident.request({"op": "status"})
    if running is not None:
        click.echo(f"a sigil worker already serves {home} (pid {running['pid']})")
        return
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "SIGIL_NO_WORKER"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigil_core.worker", "--home", str(home), "--idle-timeout",
         f"{idle_timeout:g}"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    first = proc.stdout.readline().strip() if proc.stdout else ""
    if first.startswith("a sigil worker already serves"):
        # One started by a run (worker.auto_start) is still warming up: wait for it.
        proc.wait()
        running = _wait_for_worker(resident)
        if running is not None:
            click.echo(f"a sigil worker already serves {home} (pid {running['pid']})")
            return
    if not first.startswith("ready "):
        err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
        proc.kill()
        last = (err.strip().splitlines() or [first or "no output"])[-1]
        _fail(f"the sigil worker did not start: {last}", 1)
    if proc.stdout:
        proc.stdout.close()
    status = resident.request({"op": "status"}) or {}
    sdks = ", ".join(status.get("preloaded") or []) or "none"
    click.echo(f"sigil worker started (pid {proc.pid}) for {home}; SDKs imported: {sdks}. "
               f"`sigil orchestrate` runs now start from it; `sigil worker stop` ends it.")


def _wait_for_worker(resident: Any, timeout: float = 60.0) -> dict[str, Any] | None:
    """The worker's status once it answers (it may be importing the SDKs), or None."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = resident.request({"op": "status"})
        if status is not None:
            return cast("dict[str, Any]", status)
        time.sleep(0.1)
    return None


@worker.command("stop")
def worker_stop() -> None:
    """Stop the worker of this SIGIL_HOME."""
    from . import worker as resident

    answer = resident.request({"op": "stop"})
    if answer is None:
        click.echo(f"no sigil worker serves {resident._home()}")
        return
    click.echo(f"sigil worker stopped (pid {answer['stopped']})")


@worker.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def worker_status(as_json: bool) -> None:
    """Whether a worker serves this SIGIL_HOME, since when, and how many runs it served."""
    from . import worker as resident

    status = resident.request({"op": "status"})
    if as_json:
        click.echo(json.dumps(status))
    elif status is None:
        click.echo(f"no sigil worker serves {resident._home()} (`sigil worker start`)")
    else:
        click.echo(f"sigil worker pid {status['pid']} for {status['home']}: up "
                   f"{status['up_s']:g} s, {status['runs']} run(s) served, SDKs imported: "
                   f"{', '.join(status['preloaded']) or 'none'}; exits after "
                   f"{status['idle_timeout_s']:g} s idle")


def main() -> None:
    """The ``sigil`` command in this process (``sigil_core.launch`` may hand it to a worker)."""
    from . import interrupts

    # Commands that run a session stop cleanly on Ctrl-C/SIGTERM (see interrupts.py). Usually
    # installed already when sigil_core was imported (from the original command line); this
    # covers an entry point that rewrote sys.argv.
    # (run_command reads an interpreter's command line: the program comes after python.)
    if interrupts.run_command([sys.executable, "sigil", *sys.argv[1:]]) is not None:
        interrupts.install()
    from .errors import UsageError

    try:
        cli(prog_name="sigil")
    except UsageError as exc:
        # A plugin that cannot be used in strict mode, a config error met by a plugin command:
        # the user's to fix, so one line and exit 2, never a traceback.
        _fail(str(exc))


if __name__ == "__main__":
    main()
