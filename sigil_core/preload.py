"""Importing a slow module (a provider's SDK) in the background, overlapped with start-up.

``import anthropic`` costs about two seconds of CPU (thousands of pydantic models) and
``import openai`` about one; a provider that imported its SDK at its first call would make
every real-model run wait that long before its first request. Instead the orchestrator calls
the chosen provider's optional ``prepare()`` the moment the provider is known, the provider
calls :func:`preload` there, and a daemon thread imports the SDK while the run does everything
else it does before its first LLM call (sessions, sinks, routing, memory, planning prompts).
The call path then asks :meth:`Preload.get` for the module::

    def prepare(self) -> None:
        preload("anthropic")

    def _client(self):
        anthropic = preload("anthropic").get()   # waits for the thread if it is still going

Thread safety. Python's import system locks each module while it executes, so two threads
never execute the same module twice, but two threads importing through one import cycle from
opposite ends can deadlock (CPython detects that and raises in one of them). So the SDK is
never imported from two threads at once: :meth:`Preload.get` first waits for the background
thread, then imports in the caller, which with the module already in ``sys.modules`` is a
dictionary look-up. A failure in the background (a broken install, a missing dependency) is
not reported from the thread: the caller's own import then runs again and raises the very same
error where the call path always raised it, so an error surfaces exactly as without preloading.

One :class:`Preload` exists per module name per process (the per-run provider instances share
it), and its figures (when the thread started, how long the import took, how long the first
caller waited) go into a ``debug`` event so a session shows whether the import was overlapped.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from types import ModuleType
from typing import Any

__all__ = ["Preload", "preload"]

_LOCK = threading.Lock()
_PRELOADS: dict[str, Preload] = {}


class Preload:
    """The background import of one module (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: ``time.perf_counter()`` when the thread started and when its import ended.
        self.started: float | None = None
        self.finished: float | None = None
        #: Seconds the first :meth:`get` waited for the thread (None: not called yet).
        self.waited: float | None = None
        #: Whether the module was already imported when the preload was asked for.
        self.was_loaded = name in sys.modules
        #: Whether the background import succeeded (None: not finished, or never started).
        self.ok: bool | None = None
        self._reported = False

    def start(self) -> Preload:
        """Start the background import unless it was started or the module is loaded."""
        with self._lock:
            if self._thread is not None or self.name in sys.modules:
                return self
            self._thread = threading.Thread(target=self._run, name=f"sigil-preload-{self.name}",
                                            daemon=True)
            self.started = time.perf_counter()
            self._thread.start()
        return self

    def _run(self) -> None:
        try:
            importlib.import_module(self.name)
            self.ok = True
        except BaseException:  # noqa: BLE001 - the caller's own import raises it again
            self.ok = False
        finally:
            self.finished = time.perf_counter()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def get(self) -> ModuleType:
        """The module: waits for the background import, then imports in the caller (which
        raises what the import raises, as a plain ``import`` would)."""
        thread = self._thread
        if thread is not None and self.waited is None:
            t0 = time.perf_counter()
            thread.join()
            self.waited = time.perf_counter() - t0
        return importlib.import_module(self.name)

    def figures(self) -> dict[str, Any]:
        """What the preload did, for a ``debug`` event (durations in milliseconds)."""
        overlapped = self._thread is not None
        data: dict[str, Any] = {"module": self.name, "preloaded": overlapped,
                                "already_imported": self.was_loaded and not overlapped}
        if overlapped and self.started is not None and self.finished is not None:
            data["import_ms"] = round((self.finished - self.started) * 1000, 1)
        if self.waited is not None:
            data["waited_ms"] = round(self.waited * 1000, 1)
        return data


    def report(self, op: Any) -> None:
        """Once per process: a ``debug`` event ``sdk_import`` in ``op``'s run with
        :meth:`figures`, saying whether the import was overlapped with start-up."""
        with self._lock:
            if self._reported:
                return
            self._reported = True
        figures = self.figures()
        if figures["preloaded"]:
            how = (f"imported in the background in {figures.get('import_ms', '?')} ms; the "
                   f"first call waited {figures.get('waited_ms', 0)} ms for it")
        elif figures["already_imported"]:
            how = "already imported"
        else:
            how = "imported by the first call (not preloaded)"
        op.run.event("debug", op.component, "sdk_import", f"{self.name}: {how}",
                     metadata=figures)


def preload(name: str, *, start: bool = True) -> Preload:
    """The process's :class:`Preload` of module ``name``, started unless ``start=False``."""
    with _LOCK:
        entry = _PRELOADS.get(name)
        if entry is None:
            entry = _PRELOADS[name] = Preload(name)
    return entry.start() if start else entry
