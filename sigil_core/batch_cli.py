"""The ``sigil batch`` command (the engine lives in :mod:`sigil_core.batch`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("batch")
@click.argument("tasks_file", metavar="TASKS", type=click.Path(dir_okay=False))
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=8, show_default=True,
              help="Tasks in flight at once (per worker with --engine ray).")
@click.option("--budget-per-task", type=click.IntRange(min=1), default=None,
              help="Token budget of each task without its own (default: the usual budget).")
@click.option("--budget-total", type=click.IntRange(min=1), default=None,
              help="Token budget shared by the whole batch: no task starts a call that would "
                   "overrun it; tasks left when it is spent are not started.")
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False), default=None,
              help="Results file, one JSON line per task "
                   "[default: outputs/batches/<TASKS name>.results.jsonl].")
@click.option("--resume", is_flag=True,
              help="Skip the tasks already in the results file and run the rest.")
@click.option("--fail-fast", is_flag=True, help="Stop launching tasks after the first failure.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="Run in this process, or on a Ray cluster.")
@click.option("--address", default=None,
              help="Ray cluster address (host:port) [default: join a local cluster, else start "
                   "one].")
@click.option("--processes", "-p", type=click.IntRange(min=1), default=1, show_default=True,
              help="--engine local: worker processes sharing the --concurrency slots. Runs "
                   "wait on the model, but Sigil's own work is CPU: past a few hundred runs in "
                   "flight one process fills one core; use up to one per core.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Ray actors running tasks (--engine ray).")
@click.option("--sessions", "sessions_mode", type=click.Choice(["auto", "shared", "gather"]),
              default="auto", show_default=True,
              help="--engine ray: where workers write session files. shared: straight into the "
                   "outputs folder (storage every node sees); gather: sent back with each result "
                   "and written by this process; auto: shared on this node, gather elsewhere.")
@click.option("--monitor", "-m", is_flag=True, help="Stream every task's events to the monitor.")
@click.option("--provider", default=None, help="LLM provider by name (default: best available).")
@click.option("--use", "use", multiple=True, metavar="PHASE=PLUGIN",
              help="Which plugin runs a phase when several implement it (repeatable).")
def batch(tasks_file: str, concurrency: int, budget_per_task: int | None,
          budget_total: int | None, output: str | None, resume: bool, fail_fast: bool,
          engine: str, address: str | None, processes: int, workers: int,
          sessions_mode: str, monitor: bool,
          provider: str | None, use: tuple[str, ...]) -> None:
    """Run every task of TASKS (JSONL or CSV) as an orchestration, many at once.

    \b
    TASKS: one JSON object a line, {"id"?, "task", "agent"?, "budget"?, "metadata"?},
    or a CSV file with a task column (and optional id, agent, budget columns).

    Each task is a normal run with its own session files; one result line per task
    (id, session_id, exit_code, success, output, tokens, duration_s, error_code) is
    appended to the results file as it finishes. Ctrl-C stops launching and lets running
    tasks finish (twice: cuts them short); `--resume` then runs only the rest.

    Exit codes: 0 every task succeeded, 1 some failed or were not started, 2 bad input,
    130 interrupted.
    """
    import asyncio
    import os
    import uuid

    from .batch import (
        BatchSettings,
        Progress,
        ResultsFile,
        load_tasks,
        run_local,
        run_ray,
    )
    from .cli import _fail, apply_choices, get_config, get_host
    from .errors import StorageError, UsageError

    config = get_config()
    host = get_host()
    apply_choices(host, config, use)
    if use:  # worker processes and Ray actors read the choices from the environment
        os.environ["SIGIL_USE"] = ",".join(filter(None, [os.environ.get("SIGIL_USE", ""), *use]))
    path = Path(tasks_file)
    try:
        tasks = load_tasks(path)
    except UsageError as exc:
        _fail(str(exc))
    results_path = (Path(output) if output
                    else config.outputs_dir / "batches" / f"{path.stem}.results.jsonl")
    if results_path.exists() and not results_path.is_file():
        _fail(f"--output {results_path} is not a regular file")
    results = ResultsFile(results_path)
    done = results.done_ids() if results_path.exists() else set()
    if done and not resume:
        _fail(f"{results_path} already holds {len(done)} result(s): pass --resume to run only "
              "the tasks not in it, or choose another --output")
    todo = [t for t in tasks if t.id not in done]
    settings = BatchSettings(concurrency=concurrency, budget_per_task=budget_per_task,
                             budget_total=budget_total, fail_fast=fail_fast, monitor=monitor,
                             provider=provider,
                             # A new prefix per invocation: a re-run or a --resume never
                             # collides with the sessions an earlier invocation recorded.
                             session_prefix=f"batch_{_safe(path.stem)}_{uuid.uuid4().hex[:6]}")

    def say(line: str) -> None:
        click.echo(line, err=True)

    if done:
        say(f"resuming: {len(done)} task(s) already in {results_path}, {len(todo)} to run")
    from .launch import tune_gc_for_many_runs

    tune_gc_for_many_runs()  # (start_up_done's freeze, and a young generation for many runs)
    try:
        with Progress(len(todo)) as progress:
            if engine == "local" and processes > 1:
                from .batch_procs import run_processes

                report = asyncio.run(run_processes(todo, settings, config, results, progress,
                                                   processes=processes, on_interrupt=say))
            elif engine == "local":
                report = asyncio.run(run_local(todo, settings, config, host, results, progress,
                                               on_interrupt=say))
            else:
                report = run_ray(todo, settings, config, host, results, progress,
                                 address=address, workers=workers, per_worker=concurrency,
                                 outputs_dir=config.outputs_dir.resolve(), on_interrupt=say,
                                 gather={"auto": None, "shared": False,
                                         "gather": True}[sessions_mode])
    except UsageError as exc:
        _fail(str(exc))
    except StorageError as exc:
        _fail(f"cannot write the results: {exc}", 4)
    finally:
        results.close()
    report.skipped = len(done)
    left = f", {report.not_started} not started" if report.not_started else ""
    say(f"batch: {report.done} of {len(todo)} task(s) run ({report.failed} failed{left}), "
        f"{report.tokens:,} tokens in {report.duration_s:.1f}s; results in {results_path}")
    sys.exit(report.exit_code)


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40] or "tasks"
