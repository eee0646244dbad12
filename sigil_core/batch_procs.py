"""``sigil batch --processes N``: the local engine spread over N worker processes.

Runs are I/O bound, so one event loop carries hundreds of them; but the framework's own work
(events, session files, memory extraction and embeddings) is CPU, and at a few hundred runs in
flight one process saturates one core. With ``--processes N`` the driver (the ``sigil batch``
process) starts N workers (``python -m sigil_core.batch_procs``), each with its own plugin host,
orchestrator and event loop, and keeps at most ``--concurrency`` tasks in flight across them
(back-pressure: each worker is sent a task only when a slot is free, to the least loaded one).

The driver and a worker talk in JSON lines over the worker's stdin and stdout (the worker moves
its own stdout to stderr first, so nothing a plugin prints can corrupt the stream):

* driver → worker: ``{"settings": {...}}`` once, then ``{"ref": K, "task": {...}, "budget": B,
  "attempt": A}`` per task, and ``{"cancel": true}`` on a second Ctrl-C; closing stdin means
  "finish what is running, then exit";
* worker → driver: ``{"ref": K, "row": {...}}`` per finished task (the results line), or
  ``{"ref": K, "cut": true}`` for a task cut short.

The driver alone writes the results file, so a line is never written twice. A worker that
dies (killed, out of memory) has its tasks retried once on a new worker, then recorded as
``WORKER_LOST`` (the same rule as the Ray engine: :class:`~sigil_core.batch.Dispatcher`).
Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group): the driver
decides, and tells them. Each worker writes its sessions into the same outputs folder, and
memory is shared as for concurrent ``sigil orchestrate`` runs on one host.

This is process plumbing, not a scheduler: the dispatch rule is "least loaded worker, while a
slot is free"; anything beyond one machine goes to Ray (``--engine ray``, DESIGN §10).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import attrs

from .batch import (
    BatchReport,
    BatchSettings,
    BatchTask,
    Dispatcher,
    Progress,
    ResultsFile,
    on_signals,
    result_row,
    run_one,
    session_id_for,
    worker_orchestrator,
)

#: The longest protocol line (a task's whole output travels in its results line).
LINE_LIMIT = 64 * 1024 * 1024


@attrs.define
class _Worker:
    proc: asyncio.subprocess.Process
    name: str
    pending: dict[int, tuple[BatchTask, int, int | None]] = attrs.Factory(dict)
    alive: bool = True
    answered: int = 0


async def run_processes(tasks: list[BatchTask], settings: BatchSettings, config: Any,
                        results: ResultsFile, progress: Progress, *, processes: int,
                        on_interrupt: Callable[[str], None] | None = None) -> BatchReport:
    """Run ``tasks`` on ``processes`` worker processes, ``settings.concurrency`` at a time."""
    books = Dispatcher(tasks, settings, config, results, progress)
    env = dict(os.environ)  # home, config, SIGIL_USE (with the --use flags): as the driver
    wake = asyncio.Event()
    workers: list[_Worker] = []
    readers: set[asyncio.Task[None]] = set()
    interrupts = 0
    barren: list[int] = []
    refs = iter(range(1, 1 << 62))
    t0 = time.perf_counter()

    async def start(index: int) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sigil_core.batch_procs", env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=LINE_LIMIT)
        worker = _Worker(proc, f"local:{proc.pid}")
        await _send(worker, {"settings": attrs.asdict(settings)})
        reader = asyncio.ensure_future(read(worker))
        readers.add(reader)
        reader.add_done_callback(readers.discard)
        return worker

    async def read(worker: _Worker) -> None:
        assert worker.proc.stdout is not None
        while True:
            try:
                line = await worker.proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                line = b""  # a line past the limit: treat the worker as broken
            if not line:
                break
            try:
                message = json.loads(line)
                task, attempt, budget = worker.pending.pop(message["ref"])
            except (ValueError, KeyError, TypeError):
                continue  # not ours (cannot happen unless the worker is broken): ignore
            worker.answered += 1
            if message.get("cut"):
                books.interrupted(task, budget)
            else:
                row = message["row"]
                if row.get("exit_code") in (130, 143) and books.report.interrupted:
                    books.interrupted(task, budget, int(row.get("tokens") or 0))
                else:
                    books.finished(row, budget)
            wake.set()
        # End of its stdout: the worker exited. What it was running is lost with it.
        worker.alive = False
        code = await worker.proc.wait()
        for task, attempt, budget in worker.pending.values():
            books.lost(task, attempt, budget, f"worker process {worker.proc.pid} exited with "
                                              f"code {code}")
        worker.pending.clear()
        if not worker.answered:
            barren.append(worker.proc.pid)
            if len(barren) >= 3 and not books.stop:
                # Workers die before finishing anything (their stderr, above, says why): stop
                # rather than start new ones forever.
                books.stop = True
                if on_interrupt:
                    on_interrupt(f"stopping: {len(barren)} worker processes exited before "
                                 "finishing a task (see their messages above)")
        wake.set()

    def interrupt() -> None:
        nonlocal interrupts
        interrupts += 1
        books.stop = True
        books.report.interrupted = True
        if interrupts == 1:
            if on_interrupt:
                on_interrupt(f"stopping: no new tasks; waiting for {books.in_flight} running "
                             "task(s) to finish (Ctrl-C again to cut them short)")
        else:
            if on_interrupt:
                on_interrupt(f"cutting {books.in_flight} running task(s) short")
            for w in workers:
                if w.alive:
                    asyncio.ensure_future(_send(w, {"cancel": True}))
        wake.set()

    async def dispatch() -> None:
        workers.extend([await start(i) for i in range(max(1, processes))])
        while True:
            for i, w in enumerate(workers):
                if not w.alive and books.queue and not books.stop:
                    workers[i] = await start(i)  # replace a dead worker while work remains
            while books.in_flight < settings.concurrency:
                live = [w for w in workers if w.alive]
                if not live or (taken := books.take()) is None:
                    break
                task, attempt, budget = taken
                worker = min(live, key=lambda w: len(w.pending))
                ref = next(refs)
                worker.pending[ref] = (task, attempt, budget)
                if not await _send(worker, {"ref": ref, "task": task.as_dict(),
                                            "budget": budget, "attempt": attempt}):
                    worker.pending.pop(ref)
                    books.lost(task, attempt, budget, "its worker process is gone")
            if books.in_flight == 0 and (books.stop or not books.queue):
                return
            wake.clear()
            await wake.wait()

    async def stop_workers() -> None:
        for w in workers:  # end of input: each finishes what it runs, then exits
            if w.proc.stdin is not None and not w.proc.stdin.is_closing():
                w.proc.stdin.close()
        for w in workers:
            try:
                await asyncio.wait_for(w.proc.wait(), timeout=30)
            except TimeoutError:
                w.proc.kill()
                await w.proc.wait()
        if readers:
            await asyncio.gather(*readers, return_exceptions=True)

    with on_signals(interrupt):
        try:
            await dispatch()
        finally:
            await stop_workers()
    return books.close(t0)


async def _send(worker: _Worker, message: dict[str, Any]) -> bool:
    stdin = worker.proc.stdin
    if stdin is None or stdin.is_closing():
        return False
    try:
        stdin.write(json.dumps(message, ensure_ascii=False, default=str).encode() + b"\n")
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


# =========================================================================== the worker


async def _serve(out: Any) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    first = json.loads(await reader.readline() or b"{}")
    settings = BatchSettings(**first.get("settings", {}))
    orchestrator = worker_orchestrator()
    name = f"local:{os.getpid()}"
    jobs: dict[int, asyncio.Task[dict[str, Any]]] = {}

    def reply(message: dict[str, Any]) -> None:
        try:
            out.write(json.dumps(message, ensure_ascii=False, default=str).encode() + b"\n")
            out.flush()
        except (BrokenPipeError, ValueError):
            pass  # the driver is gone: nobody to tell

    def done(ref: int, task: BatchTask, attempt: int,
             job: asyncio.Task[dict[str, Any]]) -> None:
        jobs.pop(ref, None)
        if job.cancelled():
            reply({"ref": ref, "cut": True})
            return
        exc = job.exception()
        if exc is None:
            reply({"ref": ref, "row": job.result()})
            return
        # run_one turns a task's own failures into its row; this is a crash of Sigil itself.
        reply({"ref": ref, "row": result_row(
            task, session_id=None, exit_code=1, success=False, output=None, tokens=0,
            duration_s=0.0, error_code="FAILED", error=f"{type(exc).__name__}: {exc}",
            attempts=attempt, worker=name)})

    while True:
        line = await reader.readline()
        if not line:
            break
        message = json.loads(line)
        if message.get("cancel"):
            for job in list(jobs.values()):
                job.cancel()
            continue
        task = BatchTask(**message["task"])
        attempt = int(message.get("attempt") or 1)
        sid = session_id_for(settings.session_prefix, task.id, attempt)
        ref = int(message["ref"])
        job = asyncio.ensure_future(run_one(orchestrator, task, settings, sid,
                                            budget=message.get("budget"), attempts=attempt,
                                            worker=name))
        jobs[ref] = job
        job.add_done_callback(functools.partial(done, ref, task, attempt))
    if jobs:
        await asyncio.gather(*jobs.values(), return_exceptions=True)


def main() -> None:
    """The worker: ``python -m sigil_core.batch_procs`` (started by the driver only)."""
    # The terminal's Ctrl-C reaches the whole process group; the driver decides what it means
    # and says so with a cancel message.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol owns the real stdout; anything else printed goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    asyncio.run(_serve(out))


if __name__ == "__main__":
    main()
