"""The daily aggregate log (outputs/logs/<day>.jsonl) when many runs share one process: their
lines are written together, whole and in order, and a failed write is every such run's own
storage error."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from core_cli import LEAD_TASK

from sigil_core.builtin import sinks
from sigil_core.config import load_config
from sigil_core.constants import LEVEL_RANK
from sigil_core.errors import StorageError
from sigil_core.model import LogEvent
from sigil_core.orchestrator import Orchestrator, RunOptions
from sigil_core.plugins import PluginHost


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SIGIL_OFFLINE_LATENCY_MS", "20")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The daily file's writes: how many runs' sinks had lines in each."""
    counts: list[int] = []
    real = sinks._write_daily

    def counted(pattern: str) -> None:
        batch = sinks._batches.get(pattern)
        if batch is not None:
            counts.append(len(batch.sinks))
        real(pattern)

    monkeypatch.setattr(sinks, "_write_daily", counted)
    return counts


async def test_concurrent_runs_share_writes_and_every_line_arrives_in_order(home, writes):
    host, config = PluginHost().load(), load_config()
    outcomes = await asyncio.gather(*(
        Orchestrator(config, host).run(RunOptions(task=LEAD_TASK, session=f"sess_d{i}"))
        for i in range(12)))
    assert all(o.exit_code == 0 for o in outcomes)
    (daily,) = (home / "outputs" / "logs").glob("*.jsonl")
    lines = [json.loads(x) for x in daily.read_text().splitlines()]
    keep = LEVEL_RANK[config.logging.level]  # the daily log's level (the session has all)
    for i in range(12):
        session = [e["id"] for e in map(json.loads, (
            home / "outputs" / "sessions" / f"sess_d{i}.jsonl").read_text().splitlines())
            if LEVEL_RANK[e["level"]] >= keep]
        assert session and [e["id"] for e in lines if e["session_id"] == f"sess_d{i}"] == session
    assert max(writes) > 1  # some writes carried several runs' lines
    assert len(writes) < sum(1 for _ in lines)


class _Run:
    """What a daily sink reads of its run."""

    def __init__(self, config) -> None:
        self.config = config


def _event(i: int) -> LogEvent:
    return LogEvent(id=f"log_t_{i}", timestamp="2026-12-03T10:00:00.000Z", level="info",
                    component="cli", operation="initialize", message=f"event {i}",
                    session_id="sess_t", correlation_id="sess_t", operation_id="op_t")


async def test_a_failed_write_is_the_storage_error_of_each_run_that_had_lines_in_it(
        home, monkeypatch):
    config = load_config()
    opened = []
    for _ in range(3):
        sink = sinks.DailyLogSink().bind(_Run(config))
        sink.open(_Run(config))
        opened.append(sink)
    first, second, third = opened
    first.write([_event(1)])
    second.write([_event(2)])  # within the window: one write for both

    class Full:
        def opt(self, **_: object) -> Full:
            return self

        def info(self, message: str) -> None:
            raise OSError(28, "No space left on device")

    from loguru import logger
    monkeypatch.setattr(logger, "bind", lambda **_: Full())
    await asyncio.sleep(sinks._DAILY_WINDOW_S * 2)  # the window ends: the write fails
    monkeypatch.undo()
    for sink in (first, second):
        with pytest.raises(StorageError, match="No space left on device"):
            sink.write([_event(3)])
        sink.write([_event(4)])  # reported once; the sink writes no more
        sink.close(_Run(config), {})
    third.write([_event(5)])  # had nothing in that write
    third.close(_Run(config), {})
    for sink in opened:
        assert sink.failed is None


async def test_a_run_closing_writes_its_last_lines_at_once(home):
    config = load_config()
    sink = sinks.DailyLogSink().bind(_Run(config))
    sink.open(_Run(config))
    sink.write([_event(7)])
    # closed on a worker thread before the window ended (the session record is written
    # there): the lines are in the file when close returns
    await asyncio.to_thread(sink.close, _Run(config), {})
    (daily,) = (home / "outputs" / "logs").glob("*.jsonl")
    assert json.loads(daily.read_text().splitlines()[-1])["id"] == "log_t_7"


async def test_runs_closing_in_one_turn_of_the_loop_share_one_write(home, writes):
    """Runs that end together (a memory write releases them at once) write their last lines
    in one loguru call, and each close returns only once its lines are in the file."""
    config = load_config()
    opened = [sinks.DailyLogSink().bind(_Run(config)) for _ in range(5)]
    for i, sink in enumerate(opened):
        sink.open(_Run(config))
        sink.write([_event(40 + i)])
    daily = home / "outputs" / "logs"

    async def close(sink: sinks.DailyLogSink, i: int) -> None:
        await sink.aclose(_Run(config), {})
        ids = [json.loads(x)["id"] for x in next(daily.glob("*.jsonl")).read_text().splitlines()]
        assert f"log_t_{40 + i}" in ids  # in the file when aclose returns

    await asyncio.gather(*(close(s, i) for i, s in enumerate(opened)))
    assert writes == [5]  # one write, not one a run
    assert all(s.key is None for s in opened)  # the handler given back
    await asyncio.sleep(sinks._DAILY_WINDOW_S * 2)  # the window's timer finds nothing left
    assert writes == [5]


async def test_a_failed_shared_close_write_is_each_closing_runs_storage_error(home, monkeypatch):
    config = load_config()
    opened = [sinks.DailyLogSink().bind(_Run(config)) for _ in range(3)]
    for i, sink in enumerate(opened):
        sink.open(_Run(config))
        sink.write([_event(50 + i)])

    class Full:
        def opt(self, **_: object) -> Full:
            return self

        def info(self, message: str) -> None:
            raise OSError(28, "No space left on device")

    from loguru import logger
    monkeypatch.setattr(logger, "bind", lambda **_: Full())
    outcomes = await asyncio.gather(*(s.aclose(_Run(config), {}) for s in opened),
                                    return_exceptions=True)
    monkeypatch.undo()
    assert all(isinstance(o, StorageError) and "No space left" in str(o) for o in outcomes)


async def test_a_run_whose_lines_are_written_closes_without_waiting(home):
    config = load_config()
    sink = sinks.DailyLogSink().bind(_Run(config))
    sink.open(_Run(config))
    sink.write([_event(60)])
    sinks._write_daily(sink.key)
    # nothing of this run waits: aclose completes without a turn of the loop
    coro = sink.aclose(_Run(config), {})
    with pytest.raises(StopIteration):
        coro.send(None)
    assert sink.key is None


def test_without_an_event_loop_lines_are_written_at_once(home):
    config = load_config()
    sink = sinks.DailyLogSink().bind(_Run(config))
    sink.open(_Run(config))
    sink.write([_event(8)])
    (daily,) = (home / "outputs" / "logs").glob("*.jsonl")
    assert json.loads(daily.read_text().splitlines()[-1])["id"] == "log_t_8"
    sink.close(_Run(config), {})




async def test_a_run_that_never_lets_the_loop_turn_still_writes_as_it_goes(home):
    config = load_config()
    sink = sinks.DailyLogSink().bind(_Run(config))
    sink.open(_Run(config))
    for i in range(sinks._BATCH_FLUSHES):
        sink.write([_event(i)])
    (daily,) = (home / "outputs" / "logs").glob("*.jsonl")
    assert len(daily.read_text().splitlines()) == sinks._BATCH_FLUSHES  # not held in memory
    sink.close(_Run(config), {})


def test_lines_left_waiting_by_an_ended_event_loop_are_written_by_the_next(home):
    """A batch's timer belongs to the loop that was running: when that loop ended first (an
    application calling asyncio.run per task), the next loop's lines start a timer of its own
    and the earlier lines go with them."""
    config = load_config()
    first, second = (sinks.DailyLogSink().bind(_Run(config)) for _ in range(2))

    async def leave(sink: sinks.DailyLogSink, i: int) -> None:
        sink.open(_Run(config))
        sink.write([_event(i)])  # the loop ends before the window: nothing written yet

    asyncio.run(leave(first, 20))

    async def write_and_wait() -> None:
        await leave(second, 21)
        await asyncio.sleep(sinks._DAILY_WINDOW_S * 2)

    asyncio.run(write_and_wait())
    (daily,) = (home / "outputs" / "logs").glob("*.jsonl")
    assert [json.loads(x)["id"] for x in daily.read_text().splitlines()] == ["log_t_20",
                                                                            "log_t_21"]
    for sink in (first, second):
        sink.close(_Run(config), {})


def test_lines_still_waiting_when_the_process_exits_are_written(home):
    script = """
import asyncio
from sigil_core.builtin import sinks
from sigil_core.config import load_config
import test_daily_log as t
config = load_config()
async def main():
    sink = sinks.DailyLogSink().bind(t._Run(config))
    sink.open(t._Run(config))
    sink.write([t._event(30)])  # never closed, the loop ends within the window
asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True,
                          text=True,
                          cwd=home, timeout=60,
                          env={**os.environ,
                               "PYTHONPATH": str(Path(__file__).parent)})
    assert done.returncode == 0, done.stderr
    (daily,) = (home / "outputs" / "logs").glob("*.jsonl")
    assert json.loads(daily.read_text().splitlines()[-1])["id"] == "log_t_30"
