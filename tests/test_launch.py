"""The ``sigil`` entry point ends its process without the interpreter's module teardown
(``launch.exit_now``, issue 20): everything a normal exit does that anyone can see must still
happen, in a real process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest


def run(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script)], check=False, capture_output=True,
                          text=True,
                          timeout=60, cwd=tmp_path)


PROLOGUE = """
import atexit, sys, threading, time
from pathlib import Path
from sigil_core.launch import exit_now
"""


def test_exit_waits_for_threads_runs_exit_handlers_and_flushes(tmp_path: Path) -> None:
    done = run(tmp_path, PROLOGUE + """
def work():
    time.sleep(0.3)
    Path("thread.txt").write_text("finished")
threading.Thread(target=work).start()
atexit.register(lambda: Path("atexit.txt").write_text("ran"))
sys.stdout.write("buffered, no newline")  # a pipe: block-buffered until flushed
handle = open("kept.txt", "w")
handle.write("left open by the program")
exit_now(3)
""")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "buffered, no newline"
    assert (tmp_path / "thread.txt").read_text() == "finished"
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert (tmp_path / "kept.txt").read_text() == "left open by the program"


def test_executor_work_queued_before_exit_is_done(tmp_path: Path) -> None:
    done = run(tmp_path, PROLOGUE + """
from concurrent.futures import ThreadPoolExecutor
pool = ThreadPoolExecutor(1)
for i in range(5):
    pool.submit(lambda i=i: (time.sleep(0.05), Path(f"job{i}.txt").write_text("done")))
exit_now(None)
""")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob("job*.txt")) == [f"job{i}.txt" for i in range(5)]


@pytest.mark.parametrize(("code", "status", "stderr"), [
    ("'bad thing'", 1, "bad thing\n"), ("0", 0, ""), ("None", 0, ""), ("2", 2, ""),
    ("130", 130, "")])
def test_exit_codes_as_sys_exit_takes_them(tmp_path: Path, code: str, status: int,
                                           stderr: str) -> None:
    done = run(tmp_path, PROLOGUE + f"exit_now({code})\n")
    assert (done.returncode, done.stderr) == (status, stderr)


def test_a_closed_stdout_does_not_turn_into_a_traceback(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(PROLOGUE + """
sys.stdout.write("x" * 1000)  # buffered
Path("written").touch()
time.sleep(1)
exit_now(0)
""")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + 30
    while not (tmp_path / "written").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.stdout.close()  # as `sigil ... | head -1` does, before the buffered line is flushed
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert err == ""


def test_dead_weak_proxies_among_the_collector_objects_are_no_error(tmp_path: Path) -> None:
    done = run(tmp_path, PROLOGUE + """
import weakref
class Thing:
    pass
thing = Thing()
proxies = [weakref.proxy(thing)]  # kept in a list the collector tracks
del thing                          # the proxy's referent is gone
exit_now(4)
""")
    assert (done.returncode, done.stderr) == (4, "")


def test_a_file_opened_during_start_up_is_flushed_though_start_up_was_frozen(tmp_path: Path):
    """``sigil orchestrate`` freezes what start-up built (launch.start_up_done): the collector's
    get_objects() leaves that generation out, and a plugin's file opened then must still be
    flushed at exit."""
    done = run(tmp_path, PROLOGUE + """
import gc
from sigil_core import launch
gc.disable()
launch._gc_state["paused"] = True
handle = open("plugin.log", "w")
handle.write("opened and written during start-up")
launch.start_up_done()
assert gc.isenabled() and gc.get_freeze_count() > 0
exit_now(0)
""")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "plugin.log").read_text() == "opened and written during start-up"


@pytest.mark.parametrize(("command", "young"), [
    (["orchestrate", "--dry-run", "Qualify this lead: Ann Lee, CTO at Initech"], 700),
    (["batch", "tasks.jsonl"], 50_000)])
def test_runs_pause_the_collector_for_start_up_only(tmp_path: Path, command: list[str],
                                                    young: int):
    """Start-up runs with the collector paused (its passes over what imports build cost ~40 ms
    of an offline run); the runs themselves have it back, with start-up frozen, and a batch's
    with a young generation for many runs (launch.tune_gc_for_many_runs)."""
    (tmp_path / "tasks.jsonl").write_text(
        '{"task": "Qualify this lead: Ann Lee, CTO at Initech"}\n')
    done = run(tmp_path, f"""
import asyncio, gc, json, os, sys
from pathlib import Path
os.environ["SIGIL_HOME"] = str(Path("home").absolute())
os.environ["SIGIL_WORKER_AUTO_START"] = "0"
seen = {{}}
real_run = asyncio.run
def run(coro, **kwargs):
    seen.setdefault("run", [gc.isenabled(), gc.get_freeze_count() > 0, gc.get_threshold()[0]])
    return real_run(coro, **kwargs)
asyncio.run = run
import sigil_core.cli as cli
real_config = cli.get_config
def get_config(*args, **kwargs):
    seen["start-up"] = [gc.isenabled()]
    return real_config(*args, **kwargs)
cli.get_config = get_config
import atexit
atexit.register(lambda: Path("seen.json").write_text(json.dumps(seen)))
sys.argv = ["sigil", *{command!r}]
from sigil_core.launch import main
main()
""")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "seen.json").read_text()) == {
        "start-up": [False], "run": [True, True, young]}


def test_a_process_tuned_for_many_runs_still_collects_cyclic_garbage(tmp_path: Path):
    """A young generation of 50,000 objects delays the collector, it does not stop it: garbage
    a plugin leaves in reference cycles is freed once that many objects piled up."""
    done = run(tmp_path, PROLOGUE + """
import gc, weakref
from sigil_core import tune_gc_for_many_runs
tune_gc_for_many_runs()
assert gc.isenabled() and gc.get_threshold()[0] == 50_000
class Node:
    pass
first = Node(); first.me = first
alive = weakref.ref(first)
del first
for _ in range(60_000):
    node = Node(); node.me = node
assert alive() is None, "the cycle was never collected"
exit_now(0)
""")
    assert done.returncode == 0, done.stderr


def test_start_up_done_leaves_a_collector_it_did_not_pause_alone() -> None:
    """An application embedding Sigil (or a run forked from a worker) keeps its collector."""
    import gc

    from sigil_core.launch import start_up_done

    frozen = gc.get_freeze_count()
    start_up_done()
    assert gc.isenabled() and gc.get_freeze_count() == frozen
