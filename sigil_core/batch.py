"""``sigil batch``: many orchestrations from one file, in one process or on a Ray cluster.

A batch file holds one task a line (JSONL: ``{"id"?, "task", "agent"?, "budget"?,
"metadata"?}``; or CSV with a ``task`` column and optional ``id``, ``agent``, ``budget``).
Each task is an ordinary run (its own session files, memory, monitor events); the batch adds:

* concurrency: runs are I/O bound (model latency), so the ``local`` engine runs ``N`` of them
  at once on one event loop (or spread over ``--processes`` worker processes, when Sigil's own
  CPU work fills a core: :mod:`sigil_core.batch_procs`); the ``ray`` engine hands them to Ray actors on a cluster's
  workers (each actor runs several at once), with back-pressure from the driver;
* a shared token budget (``--budget-total``): locally one :class:`SharedBudget` that every
  run's :class:`~sigil_core.budget.BudgetTracker` reserves from, so no task starts a call that
  would overrun it, and no task starts once less is left than the smallest successful task
  so far has used; on Ray each task is handed its budget from the total when it starts (and
  gives back what it did not use), so the allotments never add up to more than the total;
* a results file, one JSON line per finished task (id, session id, exit code, success,
  output, tokens, duration, error code), written whole as each task ends; ``--resume`` skips
  the tasks already in it;
* progress on stderr (a live bar on a terminal, a line every few seconds otherwise), and
  Ctrl-C: the first stops launching and lets running tasks finish; the second cuts them short
  (their sessions are recorded as interrupted); results so far are kept either way.

Ray is an optional dependency (``pip install 'sigil-core[ray]'``); Sigil does not schedule
across machines itself (DESIGN §10).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Self

import attrs

from .errors import UsageError

#: A task id usable in a session id (letters, digits, _ and -).
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
#: Below this many tokens left in the shared budget a task is not started.
MIN_TASK_TOKENS = 64
#: How long a first Ctrl-C waits for running tasks before the batch gives up on them.
EXIT_INTERRUPTED = 130


@attrs.define
class BatchTask:
    """One line of the batch file."""

    id: str
    task: str
    agent: str | None = None
    budget: int | None = None
    metadata: dict[str, Any] = attrs.Factory(dict)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class BatchSettings:
    """What ``sigil batch`` was asked."""

    concurrency: int = 8
    budget_per_task: int | None = None
    budget_total: int | None = None
    fail_fast: bool = False
    monitor: bool = False
    provider: str | None = None
    session_prefix: str = "batch"


# =========================================================================== the batch file


def load_tasks(path: Path) -> list[BatchTask]:
    """Read a JSONL or CSV batch file; a bad line is a UsageError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"batch file {path} does not exist") from None
    except UnicodeDecodeError:
        raise UsageError(f"batch file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"cannot read batch file {path}: {exc.strerror}") from None
    if path.suffix.lower() == ".csv":
        rows = _csv_rows(path, text)
    else:
        rows = _jsonl_rows(path, text)
    tasks: list[BatchTask] = []
    seen: dict[str, int] = {}
    for lineno, row in rows:
        task = _task_from_row(path, lineno, row, default_id=str(len(tasks) + 1))
        if task.id in seen:
            raise UsageError(f"{path}:{lineno}: id {task.id!r} is already used on line "
                             f"{seen[task.id]}; give each task its own id")
        seen[task.id] = lineno
        tasks.append(task)
    if not tasks:
        raise UsageError(f"batch file {path} has no tasks (one JSON object a line, "
                         '{"task": "..."}, or a CSV with a task column)')
    return tasks


def _jsonl_rows(path: Path, text: str) -> Iterable[tuple[int, dict[str, Any]]]:
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{lineno}: not valid JSON ({exc.msg}); each line must be "
                             'one object such as {"task": "..."}') from None
        if not isinstance(row, dict):
            raise UsageError(f"{path}:{lineno}: expected a JSON object with a \"task\" key")
        yield lineno, row


def _csv_rows(path: Path, text: str) -> Iterable[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or "task" not in reader.fieldnames:
        raise UsageError(f"{path}: a CSV batch file needs a 'task' column "
                         f"(found: {', '.join(reader.fieldnames or []) or 'no header'})")
    for row in reader:
        clean = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
        if "budget" in clean:
            clean["budget"] = _int_or_error(path, reader.line_num, clean["budget"])
        yield reader.line_num, clean


def _int_or_error(path: Path, lineno: int, value: Any) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise UsageError(f"{path}:{lineno}: budget must be a whole number, "
                         f"not {value!r}") from None


def _task_from_row(path: Path, lineno: int, row: dict[str, Any], default_id: str) -> BatchTask:
    where = f"{path}:{lineno}"
    unknown = sorted(set(row) - {"id", "task", "agent", "budget", "metadata"})
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; a task line may hold id, task, "
                         "agent, budget and metadata")
    task = row.get("task")
    if not isinstance(task, str) or not task.strip():
        raise UsageError(f"{where}: \"task\" must be a non-empty string")
    raw_id = row.get("id", default_id)
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id).strip():
        raise UsageError(f"{where}: \"id\" must be a non-empty string or a number")
    agent = row.get("agent")
    if agent is not None and not isinstance(agent, str):
        raise UsageError(f"{where}: \"agent\" must be a string")
    budget = row.get("budget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)
                               or budget <= 0):
        raise UsageError(f"{where}: \"budget\" must be a positive whole number of tokens")
    metadata = row.get("metadata", {})
    if not isinstance(metadata, dict):
        raise UsageError(f"{where}: \"metadata\" must be an object")
    return BatchTask(id=str(raw_id).strip(), task=task.strip(), agent=agent, budget=budget,
                     metadata=metadata)


def session_id_for(prefix: str, task_id: str, attempt: int = 1) -> str:
    """A session id for a task: ``<prefix>_<task id made safe>[_a<attempt>]`` (at most 128)."""
    safe = _UNSAFE.sub("-", task_id).strip("-") or "task"
    sid = f"{prefix}_{safe}"[:120]
    return sid if attempt == 1 else f"{sid}_a{attempt}"


# =========================================================================== shared budget


class SharedBudget:
    """A token budget several runs draw from (``--budget-total`` on the local engine).

    Every run's :class:`~sigil_core.budget.BudgetTracker` holds a reference and keeps it in step
    with its own books: a call's reservation is also reserved here, its usage charged here, and
    :attr:`available` caps what the run may reserve. Single event loop, so no lock.
    """

    def __init__(self, total: int) -> None:
        if total <= 0:
            raise ValueError("the shared budget must be positive")
        self.total = total
        self.used = 0
        self.reserved = 0

    @property
    def available(self) -> int:
        return max(0, self.total - self.used - self.reserved)


# =========================================================================== results


@attrs.define
class ResultsFile:
    """The results JSONL: whole lines appended as tasks finish; read back for ``--resume``."""

    path: Path
    _appender: Any = None

    def done_ids(self) -> set[str]:
        """Ids of the tasks already in the file (a torn last line is ignored)."""
        ids: set[str] = set()
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ids
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "id" in row:
                ids.add(str(row["id"]))
        return ids

    def write(self, row: dict[str, Any]) -> None:
        from .files import JsonlAppender

        if self._appender is None:
            self._appender = JsonlAppender(self.path)
        self._appender.append(json.dumps(row, ensure_ascii=False, default=str) + "\n")

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()
            self._appender = None


def result_row(task: BatchTask, *, session_id: str | None, exit_code: int, success: bool,
               output: Any, tokens: int, duration_s: float, error_code: str | None,
               error: str | None = None, attempts: int = 1, worker: str | None = None
               ) -> dict[str, Any]:
    """One line of the results file (the same shape for every engine)."""
    row: dict[str, Any] = {
        "id": task.id, "session_id": session_id, "exit_code": exit_code, "success": success,
        "output": output, "tokens": tokens, "duration_s": round(duration_s, 3),
        "error_code": error_code, "attempts": attempts,
    }
    if error:
        row["error"] = error
    if worker:
        row["worker"] = worker
    if task.metadata:
        row["metadata"] = task.metadata
    return row


def _error_code(outcome: Any) -> str | None:
    info = getattr(outcome.result, "error", None)
    code = getattr(info, "error_code", None) if info is not None else None
    if code:
        return str(code)
    return None if outcome.exit_code == 0 else {1: "FAILED", 3: "TOKEN_001",
                                                 4: "SYSTEM_004"}.get(outcome.exit_code)


async def run_one(orchestrator: Any, task: BatchTask, settings: BatchSettings,
                  session_id: str, budget: int | None = None, attempts: int = 1,
                  worker: str | None = None) -> dict[str, Any]:
    """Run one task through ``orchestrator`` and return its results line (never raises for a
    task's own failure: a bad agent or budget is the task's exit 2, a crash its exit 1)."""
    from .errors import SigilError
    from .orchestrator import RunOptions

    options = RunOptions(task=task.task, agent=task.agent,
                         budget=budget or task.budget or settings.budget_per_task,
                         monitor=settings.monitor, session=session_id,
                         provider=settings.provider)
    t0 = time.perf_counter()
    try:
        outcome = await orchestrator.run(options)
    except UsageError as exc:
        return result_row(task, session_id=None, exit_code=2, success=False, output=None,
                          tokens=0, duration_s=time.perf_counter() - t0, error_code="USAGE",
                          error=str(exc), attempts=attempts, worker=worker)
    except SigilError as exc:
        return result_row(task, session_id=session_id, exit_code=1, success=False, output=None,
                          tokens=0, duration_s=time.perf_counter() - t0,
                          error_code=getattr(exc, "code", None) or "FAILED", error=str(exc),
                          attempts=attempts, worker=worker)
    result = outcome.result
    tokens = result.tokens.total_tokens if result.tokens is not None else 0
    return result_row(task, session_id=session_id, exit_code=outcome.exit_code,
                      success=bool(result.success) and outcome.exit_code == 0,
                      output=result.output, tokens=tokens,
                      duration_s=time.perf_counter() - t0, error_code=_error_code(outcome),
                      attempts=attempts, worker=worker)


# =========================================================================== progress


class Progress:
    """Done/failed/running, tokens, throughput and ETA on stderr.

    A live rich bar on a terminal; otherwise a plain line at most every ``interval`` seconds
    (and a last one at the end), so a log file stays readable.
    """

    def __init__(self, total: int, *, live: bool | None = None, interval: float = 5.0,
                 stream: Any = None) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.running = 0
        self.tokens = 0
        self.t0 = time.monotonic()
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.interval = interval
        self._last = time.monotonic()  # the first line after one interval, not at once
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Self:
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn("batch"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                            console=Console(file=self.stream), transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task("batch", total=self.total, stats="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._refresh()
            self._bar.__exit__(*exc)
        else:
            self.line(force=True)

    def started(self) -> None:
        self.running += 1
        self._refresh()

    def finished(self, row: dict[str, Any]) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        self.failed += 0 if row.get("success") else 1
        self.tokens += int(row.get("tokens") or 0)
        self._refresh()

    def stats(self) -> str:
        elapsed = max(1e-9, time.monotonic() - self.t0)
        rate = self.done / elapsed
        left = self.total - self.done
        eta = f"{left / rate:,.0f}s" if rate > 0 and left else "-"
        return (f"{self.done}/{self.total} done ({self.failed} failed, {self.running} running), "
                f"{self.tokens:,} tokens, {rate:.2f} tasks/s, ETA {eta}")

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done,
                             stats=f"{self.failed} failed, {self.running} running, "
                                   f"{self.tokens:,} tok")
        else:
            self.line()

    def line(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            print(f"batch: {self.stats()}", file=self.stream, flush=True)


# =========================================================================== local engine


@attrs.define
class BatchReport:
    """What the batch did, for the summary line and the exit code."""

    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    not_started: int = 0
    tokens: int = 0
    interrupted: bool = False
    duration_s: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 1 if self.failed or self.not_started else 0


class Dispatcher:
    """The driver's books for the engines that hand tasks to workers (``--processes`` and Ray).

    It keeps the queue (a task lost with its worker goes back to the front once, as attempt 2),
    the budget allotments of ``--budget-total``, the results file, the progress display, the
    report and ``--fail-fast``. Single thread: the engine calls it from its own loop.

    Allotments: each task is handed its budget from the total when it starts and gives back
    what it did not use when it ends, so the allotments in flight never add up to more than
    what is left (a call on a worker can never overrun the batch's total). A task with its own
    budget (or ``--budget-per-task``) is allotted that. Otherwise the first tasks are allotted
    the configured run budget; once tasks have succeeded, twice the most any of them used
    (never more than the run budget), so a total far below ``concurrency x run budget`` still
    keeps every slot busy. A task that runs out of tokens on such an allotment doubles it for
    the tasks after it. As on the local engine, no task starts once less is left than the
    smallest successful task has used.
    """

    def __init__(self, tasks: list[BatchTask], settings: BatchSettings, config: Any,
                 results: ResultsFile, progress: Progress) -> None:
        from collections import deque

        self.queue: deque[tuple[BatchTask, int]] = deque((t, 1) for t in tasks)
        self.settings = settings
        self.default_budget = int(config.budget.total)
        self.results = results
        self.progress = progress
        self.report = BatchReport(total=len(tasks))
        self.unallotted = settings.budget_total
        self.in_flight = 0
        self.cut_short = 0
        self.stop = False
        self.need = 0  #: the most a successful task has used (0: none yet)
        self.smallest_success = 0

    def allotment(self, task: BatchTask) -> int | None:
        """What ``task`` would be handed now (None: no total, the run's own budget rules)."""
        explicit = task.budget or self.settings.budget_per_task
        if self.unallotted is None:
            return explicit
        want = explicit or (min(self.default_budget, 2 * self.need) if self.need
                            else self.default_budget)
        return min(want, self.unallotted)

    def take(self) -> tuple[BatchTask, int, int | None] | None:
        """The next task to start, its attempt and its budget; None when nothing may start now
        (queue empty, stopping, or the total too low until running tasks give back)."""
        if self.stop or not self.queue:
            return None
        task, attempt = self.queue[0]
        budget = self.allotment(task)
        if self.unallotted is not None and budget is not None:
            if self.unallotted < max(MIN_TASK_TOKENS, self.smallest_success):
                if not self.in_flight:
                    self.stop = True  # the total is spent and nothing will give back
                return None
            self.unallotted -= budget
        self.queue.popleft()
        self.in_flight += 1
        self.progress.started()
        return task, attempt, budget

    def finished(self, row: dict[str, Any], budget: int | None) -> None:
        """A task's result line came back: record it."""
        self.in_flight -= 1
        tokens = int(row.get("tokens") or 0)
        if self.unallotted is not None and budget is not None:
            self.unallotted += max(0, budget - tokens)
        if row["success"] and tokens:
            self.need = max(self.need, tokens)
            self.smallest_success = min(self.smallest_success or tokens, tokens)
        elif row.get("error_code") == "TOKEN_001" and budget is not None:
            self.need = max(self.need, budget)  # the next ones get twice this
        self.results.write(row)
        self.progress.finished(row)
        self.report.done += 1
        self.report.failed += 0 if row["success"] else 1
        self.report.tokens += int(row.get("tokens") or 0)
        if self.settings.fail_fast and not row["success"]:
            self.stop = True

    def interrupted(self, task: BatchTask, budget: int | None, tokens: int = 0) -> None:
        """A task cut short by a second Ctrl-C: not done, so it stays out of the results and
        ``--resume`` runs it again."""
        self.in_flight -= 1
        self.cut_short += 1
        self.progress.running = max(0, self.progress.running - 1)
        if self.unallotted is not None and budget is not None:
            self.unallotted += max(0, budget - tokens)

    def lost(self, task: BatchTask, attempt: int, budget: int | None, why: str) -> None:
        """The worker running a task died: run it once more elsewhere, else record it failed."""
        self.in_flight -= 1
        self.progress.running = max(0, self.progress.running - 1)
        if self.unallotted is not None and budget is not None:
            # What it spent before dying is unknown; the session file, if any, has it.
            self.unallotted += budget
        if attempt == 1:
            self.queue.appendleft((task, 2))
            return
        self.in_flight += 1
        self.progress.running += 1
        self.finished(result_row(task, session_id=None, exit_code=1, success=False, output=None,
                                 tokens=0, duration_s=0.0, error_code="WORKER_LOST",
                                 attempts=attempt,
                                 error=f"the worker running it died twice ({why})"), None)

    def close(self, t0: float) -> BatchReport:
        """The report, with what was not started (queued, still running, cut short)."""
        self.report.not_started = len(self.queue) + self.in_flight + self.cut_short
        self.report.duration_s = time.perf_counter() - t0
        return self.report


@contextlib.contextmanager
def on_signals(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` on SIGINT and SIGTERM, through the running event loop, while inside."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, callback)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests) or no signals here
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def run_local(tasks: list[BatchTask], settings: BatchSettings, config: Any, host: Any,
                    results: ResultsFile, progress: Progress,
                    on_interrupt: Callable[[str], None] | None = None) -> BatchReport:
    """Run ``tasks`` on this event loop, ``settings.concurrency`` at a time."""
    from .orchestrator import Orchestrator

    report = BatchReport(total=len(tasks))
    pool = SharedBudget(settings.budget_total) if settings.budget_total else None
    orchestrator = Orchestrator(config, host, budget_pool=pool)
    queue: asyncio.Queue[BatchTask] = asyncio.Queue()
    for t in tasks:
        queue.put_nowait(t)
    stop = asyncio.Event()
    running: set[asyncio.Task[Any]] = set()
    cut_short: list[BatchTask] = []
    smallest_success = 0
    t0 = time.perf_counter()

    async def worker() -> None:
        nonlocal smallest_success
        while not stop.is_set():
            try:
                task = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if pool is not None and pool.available < max(MIN_TASK_TOKENS, smallest_success):
                # The shared budget is spent (less is left than any task has needed to succeed):
                # the rest are not started, rather than started to fail on TOKEN_001; --resume
                # runs them later with a new total.
                queue.put_nowait(task)
                stop.set()
                return
            budget = task.budget or settings.budget_per_task
            if pool is not None and budget is None:
                budget = max(MIN_TASK_TOKENS, min(config.budget.total, pool.available))
            progress.started()
            job = asyncio.ensure_future(run_one(
                orchestrator, task, settings, session_id_for(settings.session_prefix, task.id),
                budget=budget))
            running.add(job)
            try:
                row = await job
            except asyncio.CancelledError:
                progress.running -= 1
                if stop.is_set():
                    return  # cut short by a second Ctrl-C: not done, --resume runs it again
                raise
            finally:
                running.discard(job)
            if row["exit_code"] in (130, 143):
                # Cut short by a second Ctrl-C: its session is recorded as interrupted, but the
                # task is not done, so it stays out of the results and --resume runs it again.
                progress.running -= 1
                cut_short.append(task)
                return
            results.write(row)
            if row["success"] and row["tokens"]:
                smallest_success = min(smallest_success or row["tokens"], row["tokens"])
            progress.finished(row)
            report.done += 1
            report.failed += 0 if row["success"] else 1
            report.tokens += int(row["tokens"] or 0)
            if settings.fail_fast and not row["success"]:
                stop.set()

    interrupts = 0

    def interrupt() -> None:
        nonlocal interrupts
        interrupts += 1
        report.interrupted = True
        stop.set()
        if interrupts == 1:
            if on_interrupt:
                on_interrupt(f"stopping: no new tasks; waiting for {len(running)} running "
                             "task(s) to finish (Ctrl-C again to cut them short)")
        else:
            if on_interrupt:
                on_interrupt(f"cutting {len(running)} running task(s) short")
            for job in list(running):
                job.cancel()

    with on_signals(interrupt):
        await asyncio.gather(*(worker() for _ in range(max(1, settings.concurrency))))
    report.not_started = queue.qsize() + len(running) + len(cut_short)
    report.duration_s = time.perf_counter() - t0
    return report


# =========================================================================== ray engine


def memory_is_per_host(config: Any, host: Any) -> str | None:
    """The name of the memory backend if it keeps memory on each host's disk (else None).

    A backend says so with ``shared = True`` (memory_pgvector); one that does not, such as the
    SQLite file of memory_sqlite, is per host. Memory switched off is not a concern.
    """
    from .memory import MemorySettings

    try:
        settings = MemorySettings.from_config(config)
    except Exception:  # noqa: BLE001 - a bad memory section is reported by the runs
        return None
    if not settings.enabled:
        return None
    backends = host.registry("memory_backends")
    backend = backends.get(settings.backend)
    if backend is None or getattr(backend, "shared", False):
        return None
    return settings.backend


def run_ray(tasks: list[BatchTask], settings: BatchSettings, config: Any, host: Any,
            results: ResultsFile, progress: Progress, *, address: str | None, workers: int,
            per_worker: int, outputs_dir: Path, gather: bool | None = None,
            on_interrupt: Callable[[str], None] | None = None) -> BatchReport:
    """Run ``tasks`` as calls to Ray actors (see :mod:`sigil_core.batch_ray`)."""
    from .batch_ray import drive

    return drive(tasks, settings, config, host, results, progress, address=address,
                 workers=workers, per_worker=per_worker, outputs_dir=outputs_dir,
                 gather=gather, on_interrupt=on_interrupt)


def worker_orchestrator() -> Any:
    """An orchestrator for a worker process (a Ray actor or a ``--processes`` worker): the
    config and plugin choices come from the environment the driver handed it
    (:func:`worker_environment`: home, config file, ``SIGIL_USE`` with the ``--use`` flags)."""
    from .config import load_config
    from .files import disabled_plugins
    from .orchestrator import Orchestrator
    from .plugins import PluginHost, parse_choices

    config = load_config()
    host = PluginHost(disabled=disabled_plugins()).load()
    host.configure(config)
    host.choose(config.plugins.use)
    host.choose(parse_choices(os.environ.get("SIGIL_USE", "")))
    from .launch import tune_gc_for_many_runs

    tune_gc_for_many_runs()  # it runs many runs at once, as the driver's process does
    return Orchestrator(config, host)


def worker_environment() -> dict[str, str]:
    """The driver's Sigil settings that workers must share (home, config, choices)."""
    keep = ("SIGIL_", "ANTHROPIC_", "OPENAI_", "OTEL_")
    return {k: v for k, v in os.environ.items() if k.startswith(keep)}
