"""`sigil worker`: runs forked from a resident worker behave as runs in-process (exit codes,
stdout/stderr, working folder, environment, Ctrl-C), and a worker that would run stale code
is not used (issue 20: the first request of a run in milliseconds)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from core_cli import LEAD_TASK

import sigil_core
from sigil_core.testing import SigilCLI

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the worker needs fork and abstract Unix sockets (Linux)")


@pytest.fixture
def warm(sigil_cli: SigilCLI):
    """A worker started for the CLI's home, stopped at the end whatever happens."""
    started = sigil_cli("worker", "start", "--idle-timeout", "120")
    assert started.returncode == 0, started.stderr
    assert "sigil worker started" in started.stdout
    try:
        yield sigil_cli
    finally:
        sigil_cli("worker", "stop")


def status(cli: SigilCLI) -> dict | None:
    return json.loads(cli("worker", "status", "--json").stdout)


def test_a_run_forked_from_the_worker_is_the_same_run(warm: SigilCLI):
    proc = warm("orchestrate", "--format", "json", LEAD_TASK, env={"SIGIL_TEST_MARK": "yes"})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["result"]["output"]["tier"]
    # The run's files are in the caller's folder, not the worker's.
    (session,) = sorted(warm.sessions.glob("*.json"))
    assert json.loads(session.read_text())["session_id"] == result["result"]["session_id"]
    served = status(warm)
    assert served is not None and served["runs"] == 1
    # The forked run had the caller's environment and pid of its own.
    events = warm.session_jsonl()
    start = next(e for e in events if e["message"] == "Execution initialized")
    assert start["metadata"]["pid"] != served["pid"]


def test_runs_after_the_worker_learnt_their_imports_print_what_a_run_prints(warm: SigilCLI):
    """The worker imports what runs import (learnt after each run); loguru imported that way
    once added its stderr handler, and every later forked run echoed its events on stderr."""
    outputs = [warm("orchestrate", LEAD_TASK) for _ in range(3)]
    alone = warm("orchestrate", LEAD_TASK, env={"SIGIL_NO_WORKER": "1"})
    assert status(warm)["runs"] == 3
    for proc in outputs:
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == alone.stderr == "", proc.stderr[:500]


def test_exit_codes_and_error_lines_come_back(warm: SigilCLI):
    bad = warm("orchestrate", "--budget", "-3", LEAD_TASK)
    assert bad.returncode == 2
    assert bad.stderr.startswith("Error: ") and "budget" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert status(warm)["runs"] == 1


def test_sigil_no_worker_runs_in_process(warm: SigilCLI):
    proc = warm("orchestrate", LEAD_TASK, env={"SIGIL_NO_WORKER": "1"})
    assert proc.returncode == 0, proc.stderr
    assert status(warm)["runs"] == 0


def test_ctrl_c_reaches_the_forked_run(warm: SigilCLI):
    proc = subprocess.Popen(warm.argv("orchestrate", "--session", "warm_ctrl_c", LEAD_TASK),
                            cwd=warm.cwd, env={**warm.env, "SIGIL_OFFLINE_LATENCY_MS": "300"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    jsonl = warm.sessions / "warm_ctrl_c.jsonl"
    deadline = time.monotonic() + 60
    while not (jsonl.exists() and "llm_call" in jsonl.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never made an LLM call"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    record = json.loads((warm.sessions / "warm_ctrl_c.json").read_text())
    assert record["status"] == "interrupted" and record["signal"] == "SIGINT"


def test_a_changed_sigil_module_retires_the_worker(warm: SigilCLI):
    source = Path(sigil_core.__file__).with_name("constants.py")
    before = source.stat()
    try:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
        proc = warm("orchestrate", LEAD_TASK)
    finally:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    # Run in-process instead, and the stale worker is gone.
    assert proc.returncode == 0, proc.stderr
    deadline = time.monotonic() + 10
    while status(warm) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status(warm) is None


def test_worker_commands_without_a_worker(sigil_cli: SigilCLI):
    assert "no sigil worker serves" in sigil_cli("worker", "status").stdout
    assert "no sigil worker serves" in sigil_cli("worker", "stop").stdout
    assert sigil_cli("worker", "start", "--idle-timeout", "0").returncode == 2


# --------------------------------------------------------------------------- started by a run

#: A run that may start a worker: auto-start on, and not on a CI machine.
AUTO = {"SIGIL_WORKER_AUTO_START": "1", "CI": ""}


def wait_for(cli: SigilCLI, present: bool, timeout: float = 60) -> dict | None:
    deadline = time.monotonic() + timeout
    while True:
        found = status(cli)
        if (found is not None) == present or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def stop_worker(cli: SigilCLI) -> None:
    """Stop the home's worker, waiting for one that is still warming up (it holds the lock
    from its start): a test that failed early leaves no worker behind."""
    import fcntl

    lock = cli.home / ".worker.lock"
    if lock.exists():
        with lock.open("rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: no worker at all
            except OSError:
                wait_for(cli, present=True, timeout=60)
    cli("worker", "stop")


def test_a_run_in_its_own_process_starts_a_worker_for_the_next_runs(sigil_cli: SigilCLI):
    try:
        first = sigil_cli("orchestrate", "--format", "json", LEAD_TASK, env=AUTO)
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["result"]["output"]["tier"]  # its output is whole
        started = wait_for(sigil_cli, present=True)
        assert started is not None, "no worker was started"
        assert started["runs"] == 0 and started["idle_timeout_s"] == 1800
        second = sigil_cli("orchestrate", LEAD_TASK, env=AUTO)
        assert second.returncode == 0, second.stderr
        served = status(sigil_cli)
        assert served is not None and served["runs"] == 1 and served["pid"] == started["pid"]
    finally:
        stop_worker(sigil_cli)


@pytest.mark.parametrize("how", ["ci", "env", "config", "no_worker"])
def test_no_worker_is_started_when_told_not_to(sigil_cli: SigilCLI, how: str):
    env = dict(AUTO)
    if how == "ci":
        env["CI"] = "true"
    elif how == "env":
        env["SIGIL_WORKER_AUTO_START"] = "0"
    elif how == "config":
        sigil_cli.write_config("cli:\n  worker:\n    auto_start: false\n")
        env["SIGIL_WORKER_AUTO_START"] = ""  # unset: the config decides
    else:
        env["SIGIL_NO_WORKER"] = "1"
    try:
        proc = sigil_cli("orchestrate", LEAD_TASK, env=env)
        assert proc.returncode == 0, proc.stderr
        time.sleep(1.5)  # a worker spawned would have taken its lock file by now
        assert not (sigil_cli.home / ".worker.lock").exists()
        assert status(sigil_cli) is None
    finally:
        stop_worker(sigil_cli)


def test_an_auto_started_worker_exits_after_its_idle_timeout(sigil_cli: SigilCLI):
    sigil_cli.write_config("cli:\n  worker:\n    idle_timeout: 2\n")
    try:
        assert sigil_cli("orchestrate", LEAD_TASK, env=AUTO).returncode == 0
        started = wait_for(sigil_cli, present=True)
        assert started is not None and started["idle_timeout_s"] == 2
        assert wait_for(sigil_cli, present=False, timeout=60) is None
    finally:
        stop_worker(sigil_cli)


def test_two_workers_starting_together_leave_one(sigil_cli: SigilCLI):
    argv = [sys.executable, "-m", "sigil_core.worker", "--home", str(sigil_cli.home),
            "--idle-timeout", "60"]
    procs = [subprocess.Popen(argv, env=sigil_cli.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
             for _ in range(2)]
    try:
        firsts = sorted(p.stdout.readline().strip() for p in procs if p.stdout)
        assert firsts[0].startswith("a sigil worker already serves"), firsts
        assert firsts[1].startswith("ready "), firsts
    finally:
        stop_worker(sigil_cli)
        for p in procs:
            p.kill()
            p.communicate(timeout=30)


@pytest.mark.parametrize(("setting", "env", "message"), [
    ("cli:\n  worker:\n    idle_timeout: 0\n", {}, "cli.worker.idle_timeout"),
    ("", {"SIGIL_WORKER_AUTO_START": "maybe"}, "SIGIL_WORKER_AUTO_START"),
])
def test_bad_worker_settings_are_one_line_errors(sigil_cli: SigilCLI, setting: str,
                                                 env: dict, message: str):
    if setting:
        sigil_cli.write_config(setting)
    proc = sigil_cli("orchestrate", LEAD_TASK, env=env)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_worker_start_while_a_started_one_warms_up_reports_it(sigil_cli: SigilCLI):
    """`sigil worker start` right after a run started one (still importing the SDKs): the
    one that is coming is reported, not a failure."""
    argv = [sys.executable, "-m", "sigil_core.worker", "--home", str(sigil_cli.home),
            "--idle-timeout", "60"]
    warming = subprocess.Popen(argv, env=sigil_cli.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (sigil_cli.home / ".worker.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        started = sigil_cli("worker", "start")
        assert started.returncode == 0, started.stderr
        assert f"a sigil worker already serves {sigil_cli.home} (pid {warming.pid})" in \
            started.stdout
    finally:
        stop_worker(sigil_cli)
        warming.kill()
        warming.communicate(timeout=30)


def test_a_person_at_a_terminal_is_told_a_worker_was_started(sigil_cli: SigilCLI):
    """Outside a terminal stderr carries warnings and errors only; at one, the run says it
    left a worker behind and how to stop it."""
    import pty
    import threading

    primary, secondary = pty.openpty()
    said: list[bytes] = []

    def read_terminal() -> None:  # drained as it comes: a full terminal would block the run
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the other end is closed: all was read
                return
            if not chunk:
                return
            said.append(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen(sigil_cli.argv("orchestrate", LEAD_TASK), cwd=sigil_cli.cwd,
                                env={**sigil_cli.env, **AUTO}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=secondary)
        os.close(secondary)
        proc.communicate(timeout=120)
        reader.join(30)
        text = b"".join(said)
        assert proc.returncode == 0, text
        assert b"Started a sigil worker (pid " in text and b"sigil worker stop" in text, text
        assert wait_for(sigil_cli, present=True) is not None
    finally:
        os.close(primary)
        stop_worker(sigil_cli)
