"""The ``sigil`` command's entry point, kept to a few imports: ``sigil orchestrate`` is handed
to a resident worker when one serves this SIGIL_HOME (``sigil worker start``, see worker.py);
everything else, and every command when no worker runs, is the CLI in this process.

When the command is done, an ``orchestrate`` that ran here starts a worker for the next runs
(``worker.auto_start``), and the process ends the way the interpreter would, minus tearing
its modules down (see :func:`exit_now`)."""

from __future__ import annotations

import sys

#: Set while start-up runs with the cyclic garbage collector paused (see :func:`main`), then
#: whether :func:`start_up_done` froze what start-up built (:func:`exit_now` thaws it).
_gc_state = {"paused": False, "frozen": False}


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else None
    if command in ("orchestrate", "batch"):
        # Start-up (imports, plugins, config) only builds objects that live as long as the
        # process: the collector's passes over them are pure cost, ~40 ms of an offline run
        # here (a full pass over some 100k objects among ~100 young ones, measured with
        # gc.callbacks), and later full passes of a long batch walk them again. Paused until
        # the runs start (start_up_done), as CPython's docs advise with gc.freeze();
        # Instagram's web servers do the same.
        import gc

        gc.disable()
        _gc_state["paused"] = True
    if command == "orchestrate":
        from .worker import delegate

        served = delegate(sys.argv[1:])
        if served is not None:
            sys.exit(served)
    from .cli import main as cli_main

    code: object = 0
    try:
        cli_main()
    except SystemExit as exc:
        code = exc.code
    _start_worker()
    exit_now(code)


def start_up_done() -> None:
    """Called as the run starts: what start-up built goes into the collector's permanent
    generation (never walked again) and the collector resumes for the run's own garbage.
    Does nothing unless :func:`main` paused the collector (a run forked from a worker, an
    application embedding Sigil: their collector is theirs)."""
    if not _gc_state["paused"]:
        return
    import gc

    gc.freeze()
    _gc_state.update(paused=False, frozen=True)
    gc.enable()


#: The young generation of a process running many runs at once (:func:`tune_gc_for_many_runs`).
MANY_RUNS_YOUNG_GENERATION = 50_000


def tune_gc_for_many_runs() -> None:
    """Set this process's cyclic garbage collector for many runs at once, as ``sigil batch``
    does: what exists now (imports, plugins, configuration) goes into the permanent generation,
    and a collection starts after 50,000 new container objects instead of CPython's 700.

    A run's objects form no reference cycle (tests/test_run_engine.py), so they are freed as
    the run ends; what the collector's frequent young passes walked was the live state of the
    runs in flight (100 runs: ~65 passes, 50-60 ms of CPU, 0.5 ms a run). With this young
    generation the same 100 runs take one or two passes (3-4 ms); garbage a plugin leaves in
    cycles is still collected, after at most 50,000 objects. An application running many runs
    in one process may call it once, after its own start-up (what exists then is never
    scanned again). ``sigil orchestrate`` (one run) leaves the thresholds alone."""
    import gc

    start_up_done()  # a collector main() paused is resumed, start-up frozen
    gc.freeze()  # what exists now, in any process (again after start_up_done: harmless)
    _gc_state["frozen"] = True
    _, middle, old = gc.get_threshold()
    gc.set_threshold(MANY_RUNS_YOUNG_GENERATION, middle, old)


def _start_worker() -> None:
    """After an ``orchestrate`` that ran here, start a resident worker for the next runs
    (worker.auto_start: only when config allows and none serves this home)."""
    cli = sys.modules.get("sigil_core.cli")
    settings = getattr(cli, "worker_wanted", None)
    if settings is None:
        return
    try:
        sys.stdout.flush()  # the run's output is complete before anything else happens
    except Exception:  # noqa: BLE001, S110 - a closed pipe: exit_now says nothing either
        pass
    from .worker import auto_start

    try:
        pid = auto_start(settings)
    except Exception:  # noqa: BLE001 - an optimisation for the next run, never an error
        return
    try:
        if pid is not None and sys.stderr.isatty():
            # Said where a person sees it (as Gradle says it starts its daemon); outside a
            # terminal stderr carries warnings and errors only.
            print(f"Started a sigil worker (pid {pid}) so the next runs start warm; "
                  "`sigil worker stop` ends it, `cli.worker.auto_start: false` turns this off.",
                  file=sys.stderr)
    except Exception:  # noqa: BLE001, S110 - stderr is gone
        pass


def exit_now(code: object) -> None:
    """End the process with ``code`` (as ``SystemExit`` takes it) after everything a normal
    exit does that anyone can see, skipping only the interpreter's teardown of its modules.

    That teardown is pure cost for a command-line run: freeing onnxruntime's session, numpy
    and some thousand modules one object at a time takes 70-130 ms of an offline
    ``sigil orchestrate`` here (a tenth of the run). Instagram's Django servers end with
    ``os._exit`` after their exit handlers for the same reason ("Dismissing Python Garbage
    Collection at Instagram"). What a normal exit does first is done here, in its order:
    non-daemon threads are joined (CPython's ``threading._shutdown``, which also lets
    ``concurrent.futures`` executors finish queued work), ``atexit`` handlers run (loguru
    closes its sinks there), and every file still open for writing is flushed, the standard
    streams last (the core closes its own files when a run ends; a plugin may not, and its
    buffered lines must not be lost: finding them costs ~13 ms)."""
    import atexit
    import gc
    import io
    import os
    import threading

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): printed on stderr, status 1, as the interpreter does
        try:
            print(code, file=sys.stderr)
        except Exception:  # noqa: BLE001, S110 - stderr is gone; the status still says it
            pass
        status = 1
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is None:  # not CPython's threading: let the interpreter exit the usual way
        sys.exit(status)
    shutdown()
    atexit._run_exitfuncs()
    if _gc_state["frozen"]:
        gc.unfreeze()  # get_objects() leaves the permanent generation out: a plugin's file
        # opened during start-up is flushed too
    writers = (io.TextIOWrapper, io.BufferedWriter, io.BufferedRandom)
    standard = {id(sys.stdout), id(sys.stderr)}
    # type(), not isinstance(): the collector's objects include weak proxies, which raise
    # ReferenceError when asked anything once their referent is gone.
    files = [f for f in gc.get_objects()
             if issubclass(type(f), writers) and id(f) not in standard]
    for stream in [*files, sys.stdout, sys.stderr]:
        try:
            if not stream.closed:
                stream.flush()
        except Exception:  # noqa: BLE001, S110 - a closed pipe, a full disk: as at any exit
            pass
    os._exit(status & 0xFF)
