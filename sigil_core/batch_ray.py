"""The ``ray`` engine of ``sigil batch``: orchestrations as calls to Ray async actors.

The driver (the ``sigil batch`` process) starts ``workers`` actors (:class:`BatchWorker`); each
runs up to ``per_worker`` orchestrations at once on its own event loop (Ray's async actors with
``max_concurrency``). The driver keeps at most ``workers x per_worker`` tasks in flight
(back-pressure: a 10,000-line file is not turned into 10,000 pending calls), writes each result
line as it arrives (``ray.wait``), and:

* a task whose actor died (the process was killed, the node was lost) is retried once on a
  live actor, with a new session id (``..._a2``); a second loss is a failed result
  ``WORKER_LOST``. A task is written to the results file once, by the driver, so nothing is
  lost or duplicated;
* ``--budget-total``: each task is handed its budget from the total when it starts and gives
  back what it did not use when it ends, so the allotments in flight never add up to more
  than what is left (a call on a worker can never overrun the batch's total);
* session files: an actor on the driver's node writes to the driver's outputs folder; one on
  another node writes to a temporary folder and sends the files back with its result, which
  the driver writes into its own outputs (set ``gather=False`` when the outputs folder is on
  storage every node shares);
* memory must be shared across hosts: a per-host backend (SQLite) on a cluster of more than
  one node is refused before anything starts.

Ray is imported only here, and only when the engine is used.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from .batch import (
    BatchReport,
    BatchSettings,
    BatchTask,
    Dispatcher,
    Progress,
    ResultsFile,
    memory_is_per_host,
    run_one,
    session_id_for,
    worker_environment,
    worker_orchestrator,
)
from .errors import UsageError

#: Files of a session a gathering worker sends back.
SESSION_SUFFIXES = (".jsonl", ".json", ".cassette.jsonl")


class BatchWorker:
    """One Ray actor: a plugin host, a config and an orchestrator, reused for many tasks."""

    def __init__(self, outputs_dir: str, settings: dict[str, Any], driver_node: str,
                 gather: bool | None) -> None:
        import ray

        self.node = ray.get_runtime_context().get_node_id()
        self.gather = (self.node != driver_node) if gather is None else gather
        self.outputs = tempfile.mkdtemp(prefix="sigil-batch-") if self.gather else outputs_dir
        os.environ["SIGIL_OUTPUTS_DIR"] = self.outputs
        self.settings = BatchSettings(**settings)
        self.orchestrator = worker_orchestrator()
        self.name = f"{self.node[:8]}:{os.getpid()}"

    def pid(self) -> int:
        return os.getpid()

    async def run(self, task: dict[str, Any], budget: int | None, attempt: int) -> dict[str, Any]:
        t = BatchTask(**task)
        sid = session_id_for(self.settings.session_prefix, t.id, attempt)
        row = await run_one(self.orchestrator, t, self.settings, sid, budget=budget,
                            attempts=attempt, worker=self.name)
        if self.gather and row.get("session_id"):
            folder = Path(self.outputs) / "sessions"
            files: dict[str, str] = {}
            for suffix in SESSION_SUFFIXES:
                path = folder / f"{sid}{suffix}"
                if path.exists():
                    files[path.name] = path.read_text(encoding="utf-8", errors="replace")
                    path.unlink()
            row["_files"] = files
        return row


def _connect(address: str | None, env: dict[str, str]) -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("the ray engine needs Ray: pip install 'sigil-core[ray]' "
                         "(or use --engine local)") from None
    runtime_env = {"env_vars": env}
    kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False,
                              "logging_level": "ERROR", "runtime_env": runtime_env}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            try:  # join the local cluster if one is running ...
                ray.init(address="auto", **kwargs)
            except ConnectionError:  # ... else start one in this process
                ray.init(include_dashboard=False, **kwargs)
    except ConnectionError as exc:
        raise UsageError(f"cannot reach the Ray cluster at {address}: {exc}. Start one with "
                         "`ray start --head` or check --address") from None
    return ray


def drive(tasks: list[BatchTask], settings: BatchSettings, config: Any, host: Any,
          results: ResultsFile, progress: Progress, *, address: str | None, workers: int,
          per_worker: int, outputs_dir: Path, gather: bool | None = None,
          on_interrupt: Callable[[str], None] | None = None) -> BatchReport:
    env = worker_environment()
    env["SIGIL_OUTPUTS_DIR"] = str(outputs_dir)
    ray = _connect(address, env)
    from ray.exceptions import RayActorError, WorkerCrashedError

    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        per_host = memory_is_per_host(config, host)
        if per_host and len(nodes) > 1:
            raise UsageError(
                f"memory backend {per_host!r} keeps its memory in a file on each host, and this "
                f"Ray cluster has {len(nodes)} nodes: each would remember different things. Use "
                "a shared backend (memory: {backend: pgvector, dsn: ...}) or switch memory off "
                "for this batch (memory: {enabled: false})")
        driver_node = ray.get_runtime_context().get_node_id()
        Worker = ray.remote(BatchWorker)
        settings_dict = attrs.asdict(settings)

        def new_actor() -> Any:
            return Worker.options(max_concurrency=per_worker).remote(
                str(outputs_dir), settings_dict, driver_node, gather)

        actors: list[Any] = [new_actor() for _ in range(workers)]
        load = [0] * workers
        books = Dispatcher(tasks, settings, config, results, progress)
        pending: dict[Any, tuple[BatchTask, int, int, int | None]] = {}
        interrupts = 0
        t0 = time.perf_counter()

        def interrupt(signum: int, frame: Any) -> None:
            nonlocal interrupts
            interrupts += 1
            books.stop = True
            books.report.interrupted = True
            if on_interrupt:
                on_interrupt(f"stopping: no new tasks; waiting for {len(pending)} running "
                             "task(s) to finish (Ctrl-C again to cut them short)"
                             if interrupts == 1 else
                             f"cutting {len(pending)} running task(s) short")

        previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while True:
                while len(pending) < workers * per_worker and (taken := books.take()):
                    task, attempt, budget = taken
                    i = min(range(workers), key=lambda k: load[k])
                    ref = actors[i].run.remote(task.as_dict(), budget, attempt)
                    load[i] += 1
                    pending[ref] = (task, i, attempt, budget)
                if not pending or interrupts > 1:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in ready:
                    task, i, attempt, budget = pending.pop(ref)
                    load[i] -= 1
                    try:
                        row = ray.get(ref)
                    except (RayActorError, WorkerCrashedError) as exc:
                        if actors[i] is not None and _dead(ray, actors[i]):
                            actors[i] = new_actor()
                        books.lost(task, attempt, budget, str(exc))
                        continue
                    for name, text in (row.pop("_files", None) or {}).items():
                        _write_session_file(outputs_dir / "sessions" / name, text)
                    books.finished(row, budget)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return books.close(t0)
    finally:
        ray.shutdown()


def _dead(ray: Any, actor: Any) -> bool:
    try:
        ray.get(actor.pid.remote(), timeout=5)
        return False
    except Exception:  # noqa: BLE001 - any failure to answer means it is gone
        return True


def _write_session_file(path: Path, text: str) -> None:
    from .files import private_mkdir, private_open

    private_mkdir(path.parent)
    fd = private_open(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
