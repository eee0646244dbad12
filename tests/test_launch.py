"""The ``sigil`` entry point ends its process without the interpreter's module teardown
(``launch.exit_now``, issue 20): everything a normal exit does that anyone can see must still
happen, in a real process."""

from __future__ import annotations

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
