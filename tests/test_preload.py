"""sigil_core.preload: a provider's SDK imported in the background, overlapped with start-up,
never twice, and its errors raised where a plain import raises them."""

from __future__ import annotations

import sys
import threading

import pytest

from sigil_core import preload as preload_module
from sigil_core.preload import Preload, preload


@pytest.fixture
def slow_module(tmp_path, monkeypatch):
    """A module whose import blocks until the test releases it, counting its executions."""
    name = f"sigil_test_sdk_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "import builtins, threading\n"
        "builtins.SIGIL_TEST_GATE.wait(10)\n"
        "builtins.SIGIL_TEST_RUNS.append(threading.current_thread().name)\n"
        "VALUE = 42\n")
    gate = threading.Event()
    runs: list[str] = []
    monkeypatch.setattr("builtins.SIGIL_TEST_GATE", gate, raising=False)
    monkeypatch.setattr("builtins.SIGIL_TEST_RUNS", runs, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(preload_module, "_PRELOADS", {})
    yield name, gate, runs
    gate.set()
    sys.modules.pop(name, None)


def test_the_import_runs_in_the_background_while_the_caller_goes_on(slow_module):
    name, gate, runs = slow_module
    loading = preload(name)
    # preload returned while the import is still blocked: the caller was not held up.
    assert loading.running and runs == []
    assert preload(name) is loading  # one per module per process
    gate.set()
    module = preload(name, start=False).get()
    assert module.VALUE == 42
    # Executed once, in the background thread, not again by the caller.
    assert runs == [f"sigil-preload-{name}"]
    figures = loading.figures()
    assert figures["preloaded"] is True and "import_ms" in figures and "waited_ms" in figures


def test_an_import_error_is_raised_by_get_like_a_plain_import(tmp_path, monkeypatch):
    name = f"sigil_test_broken_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("raise ValueError('the SDK is broken: boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(preload_module, "_PRELOADS", {})
    loading = preload(name)
    with pytest.raises(ValueError, match="the SDK is broken: boom"):
        loading.get()
    assert loading.ok is False
    assert name not in sys.modules


def test_without_prepare_the_first_get_imports_in_the_caller(slow_module):
    name, gate, runs = slow_module
    gate.set()
    loading = preload(name, start=False)
    assert loading.get().VALUE == 42
    assert runs == [threading.current_thread().name]
    assert loading.figures()["preloaded"] is False


def test_an_already_imported_module_starts_no_thread(monkeypatch):
    monkeypatch.setattr(preload_module, "_PRELOADS", {})
    loading = Preload("json").start()
    assert not loading.running and loading.figures()["already_imported"] is True


class _Op:
    component = "planner"

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.run = self

    def event(self, *args, **kwargs) -> None:
        self.events.append((args, kwargs))


def test_the_figures_go_into_one_debug_event_per_process(slow_module):
    name, gate, _ = slow_module
    loading = preload(name)
    gate.set()
    loading.get()
    op = _Op()
    loading.report(op)
    loading.report(op)
    assert len(op.events) == 1
    (level, component, operation, message), kwargs = op.events[0]
    assert (level, component, operation) == ("debug", "planner", "sdk_import")
    assert "imported in the background" in message
    assert kwargs["metadata"]["preloaded"] is True
