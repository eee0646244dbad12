"""Loading the embedder (a model, ~0.3 s of CPU) stays off a run's critical path: it starts on a
thread as the run starts, only when memory is on, and opening the store waits for it without
blocking the event loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sigil_core.memory import open_store, preload_embedder


class SlowModel:
    """An embedder whose ``ready()`` takes a while, as a model's load does."""

    name = "slow"
    dimensions = 8
    priority = 10

    def __init__(self) -> None:
        self.release = threading.Event()
        self.loads: list[str] = []

    def ready(self) -> bool:
        self.loads.append(threading.current_thread().name)
        assert self.release.wait(10), "never released"
        return True

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [[1.0] * 8 for _ in texts]


class Config:
    def __init__(self, memory: dict[str, Any]) -> None:
        self.memory = memory

    def section(self, name: str) -> dict[str, Any]:
        return self.memory if name == "memory" else {}


class Backend:
    name = "sqlite"
    description = "records what it was opened with"

    async def open(self, config: Any, embedder: Any, **kwargs: Any) -> Any:
        return embedder


class Host:
    def __init__(self, model: SlowModel, backends: bool = True) -> None:
        self.model = model
        self.backends = {"sqlite": Backend()} if backends else {}

    def registry(self, kind: str) -> dict[str, Any]:
        return {"embedders": {"slow": self.model},
                "memory_backends": self.backends}[kind]


def test_preload_starts_loading_on_a_thread_when_memory_is_on():
    model = SlowModel()
    thread = preload_embedder(Config({}), Host(model))
    assert thread is not None
    model.release.set()
    thread.join(10)
    assert model.loads == ["sigil-embedder-load"]


def loaded_with(modules: tuple[str, ...], import_here: bool,
                prefetch: Any = None) -> SlowModel:
    """A model naming ``modules`` as its heavy imports (and with ``prefetch``), preloaded and
    loaded (thread joined)."""
    model = SlowModel()
    model.preload_modules = modules  # type: ignore[attr-defined]
    if prefetch is not None:
        model.prefetch = prefetch  # type: ignore[attr-defined]
    model.release.set()
    thread = preload_embedder(Config({}), Host(model), import_here=import_here)
    assert thread is not None
    thread.join(10)
    assert model.loads == ["sigil-embedder-load"]
    return model


def test_heavy_modules_are_imported_by_the_caller_then_the_model_loads_on_the_thread(
        tmp_path, monkeypatch):
    """Imports hold the interpreter lock: made on the loading thread they would fight the
    caller's own start-up; with import_here the caller makes them first."""
    import sys

    (tmp_path / "sigil_fake_heavy.py").write_text(
        "import threading\nIMPORTED_BY = threading.current_thread().name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded_with(("sigil_fake_heavy",), import_here=True)
    assert sys.modules.pop("sigil_fake_heavy").IMPORTED_BY == threading.current_thread().name
    # Without import_here nothing is imported by the caller.
    loaded_with(("sigil_fake_heavy",), import_here=False)
    assert "sigil_fake_heavy" not in sys.modules


def test_prefetch_runs_on_the_thread_beside_the_imports_and_loading_waits_for_them(
        tmp_path, monkeypatch):
    """What loading can do without the interpreter lock (reading and hashing a model file) is
    done on the thread while the caller imports; loading itself starts after the imports end
    (the same module imported on two threads at once can deadlock on its import lock)."""
    import sys

    marks: list[tuple[str, str]] = []
    (tmp_path / "sigil_fake_slow_import.py").write_text(
        "import time\ntime.sleep(0.3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = SlowModel()
    model.preload_modules = ("sigil_fake_slow_import",)  # type: ignore[attr-defined]
    model.prefetch = lambda: marks.append(  # type: ignore[attr-defined]
        ("prefetch", threading.current_thread().name)) or marks.append(
        ("imported yet", str("sigil_fake_slow_import" in sys.modules)))
    real_ready = model.ready
    model.ready = lambda: (marks.append(  # type: ignore[method-assign]
        ("ready", str("sigil_fake_slow_import" in sys.modules))), real_ready())[1]
    model.release.set()
    try:
        thread = preload_embedder(Config({}), Host(model), import_here=True)
        assert thread is not None
        thread.join(10)
    finally:
        sys.modules.pop("sigil_fake_slow_import", None)
    assert marks == [("prefetch", "sigil-embedder-load"), ("imported yet", "False"),
                     ("ready", "True")]


def test_a_failing_prefetch_is_left_to_the_load_to_report():
    def prefetch() -> None:
        raise OSError("the model file is gone")

    loaded_with((), import_here=True, prefetch=prefetch)


def test_a_missing_heavy_module_is_left_to_the_load_to_report():
    loaded_with(("sigil_no_such_module_anywhere",), import_here=True)


def test_no_preload_when_memory_is_off_or_not_installed():
    model = SlowModel()
    model.release.set()
    assert preload_embedder(Config({"enabled": False}), Host(model)) is None
    assert preload_embedder(Config({}), Host(model, backends=False)) is None
    assert preload_embedder(Config({"k": "many"}), Host(model)) is None  # the phase reports it
    assert model.loads == []


async def test_opening_the_store_does_not_block_the_event_loop_while_the_model_loads():
    model = SlowModel()
    ticks = 0

    async def planner() -> None:  # stands for the planning that runs beside retrieval
        nonlocal ticks
        while not model.release.is_set():
            ticks += 1
            if ticks == 5:
                model.release.set()  # only reachable if the loop keeps running
            await asyncio.sleep(0.01)

    opened, _ = await asyncio.gather(open_store(Config({}), Host(model)), planner())
    assert opened is model and ticks >= 5


async def test_once_loaded_the_store_opens_without_a_thread_or_a_second_load():
    """A run opens its store several times (retrieve, extract) and a process may run many
    runs: choosing an embedder that loaded already stays on the event loop."""
    model = SlowModel()
    model.release.set()
    host = Host(model)
    assert await open_store(Config({}), host) is model
    assert len(model.loads) == 1 and model.loads[0] != threading.current_thread().name
    threads_before = {t.name for t in threading.enumerate()}
    for _ in range(3):
        assert await open_store(Config({}), host) is model
    assert len(model.loads) == 1  # not loaded (nor asked) again
    assert {t.name for t in threading.enumerate()} == threads_before


async def test_an_embedder_that_failed_to_load_is_not_taken_as_loaded(capsys):
    class Broken(SlowModel):
        name = "broken"
        priority = 20

        def ready(self) -> bool:
            self.loads.append(threading.current_thread().name)
            raise RuntimeError("no native library")

    model, broken = SlowModel(), Broken()
    model.release.set()

    class Both(Host):
        def registry(self, kind: str) -> dict[str, Any]:
            if kind == "embedders":
                return {"slow": model, "broken": broken}
            return super().registry(kind)

    host = Both(model)
    assert await open_store(Config({}), host) is model
    assert await open_store(Config({}), host) is model
    assert len(broken.loads) == 1 and len(model.loads) == 1
    assert capsys.readouterr().err.count("embedder 'broken' cannot load") == 1
