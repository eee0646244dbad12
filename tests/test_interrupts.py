"""Runs that end early leave a true record: Ctrl-C and SIGTERM at any moment of `sigil
orchestrate`, SIGKILL, and an exhausted budget (issue 11, "Runs that end early")."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from core_cli import CLI, LEAD_TASK

#: Slow offline calls make a lead run last well over a second after start-up.
SLOW = {"SIGIL_OFFLINE_LATENCY_MS": "250"}


def start(sigil: CLI, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sigil_core", *args], cwd=sigil.cwd,
        env={**sigil.env, **SLOW, **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def wait_for_handlers(proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    """Wait until Sigil's own code runs: it catches SIGTERM (the interpreter alone does not).

    Before that the process is still the bare Python interpreter starting up, where a signal
    does what it does to any Python program; everything after is Sigil's responsibility.
    """
    status = Path(f"/proc/{proc.pid}/status")
    if not status.exists():
        pytest.skip("needs /proc to see when the process has installed its signal handlers")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            caught = next(int(line.split()[1], 16) for line in status.read_text().splitlines()
                          if line.startswith("SigCgt:"))
        except (OSError, StopIteration):
            caught = 0
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        if proc.poll() is not None:
            raise AssertionError(f"sigil exited early: {proc.returncode} {proc.stderr.read()}")
        time.sleep(0.002)
    raise AssertionError("sigil never installed its signal handlers")


def interrupt(sigil: CLI, session: str, delay: float, sig: int = signal.SIGINT) -> tuple[int, str]:
    proc = start(sigil, "orchestrate", "--session", session, LEAD_TASK)
    wait_for_handlers(proc)
    time.sleep(delay)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out + err


def record(sigil: CLI, session: str) -> dict:
    return json.loads((sigil.sessions / f"{session}.json").read_text())


def test_sigint_at_random_moments_always_leaves_an_interrupted_session(sigil):
    rng = random.Random(os.environ.get("SIGIL_TEST_SEED", time.time_ns()))
    # A lead run makes at least six calls one after the other: > 1.5 s after start-up.
    delays = [rng.uniform(0.0, 1.2) for _ in range(20)]
    sessions = [f"sess_int{i:02d}" for i in range(20)]
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda sd: interrupt(sigil, *sd), zip(sessions, delays)))
    for session, delay, (code, output) in zip(sessions, delays, outcomes):
        assert code == 130, f"{session} (SIGINT after {delay:.3f} s): exit {code}\n{output}"
        assert "Traceback" not in output and "Aborted!" not in output, output
        data = record(sigil, session)
        assert data["status"] == "interrupted", (session, delay)
        assert data["signal"] == "SIGINT"
        assert data["summary"]["exit_code"] == 130
        assert "partial_result" in data
        # The tokens used so far: the record's total is what the journal's last event says.
        journal = [json.loads(x) for x in
                   (sigil.sessions / f"{session}.jsonl").read_text().splitlines()]
        assert data["summary"]["total_tokens"] == journal[-1]["budget_snapshot"]["used"]
        assert data["token_summary"]["total_tokens"] == data["summary"]["total_tokens"]
        steps = data["partial_result"]["steps"]
        done = {e["metadata"]["step_name"] for e in journal
                if e["operation"] == "execute_step"}
        assert set(steps) == done
    assert len(list(sigil.sessions.glob("*.json"))) == 20


def test_sigint_at_the_first_moment_is_recorded_not_aborted(sigil):
    # Today: click prints "Aborted!" and exits 1 with no session when Ctrl-C comes early.
    code, output = interrupt(sigil, "sess_early", 0.0)
    assert code == 130, output
    assert "Aborted!" not in output
    data = record(sigil, "sess_early")
    assert data["status"] == "interrupted"
    assert data["task"] == LEAD_TASK


def test_sigterm_is_recorded_like_ctrl_c_with_exit_143(sigil):
    code, output = interrupt(sigil, "sess_term", 0.9, signal.SIGTERM)
    assert code == 143, output
    data = record(sigil, "sess_term")
    assert data["status"] == "interrupted" and data["signal"] == "SIGTERM"
    assert data["summary"]["total_tokens"] == data["token_summary"]["total_tokens"]
    critical = [e for e in data["events"] if e["operation"] != "complete_execution"][-1]
    assert critical["error_info"]["error_message"] == "interrupted by SIGTERM"


def test_interrupted_run_prints_where_the_partial_result_is(sigil):
    code, output = interrupt(sigil, "sess_print", 1.0)
    assert code == 130
    assert "No final result" in output or "Partial result" in output
    assert "sess_print.json" in output
    assert "Result:\nnull" not in output


def test_exhausted_budget_says_there_is_no_final_result_and_where_the_partial_is(sigil):
    proc = sigil("orchestrate", "--session", "sess_budget", "--budget", "900", LEAD_TASK)
    assert proc.returncode == 3
    assert "null" not in proc.stdout
    line = next(x for x in proc.stdout.splitlines() if x.startswith("No final result"))
    assert line.endswith(str(Path("outputs", "sessions", "sess_budget.json")))
    assert record(sigil, "sess_budget")["status"] == "budget_exhausted"


def _wait_for_tokens(sigil: CLI, session: str, proc: subprocess.Popen[str]) -> None:
    journal = sigil.sessions / f"{session}.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists():
            for line in journal.read_text().splitlines():
                if line and json.loads(line).get("budget_snapshot", {}).get("used", 0) > 0:
                    return
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)
    raise AssertionError("no tokens were booked")


def test_killed_session_is_rebuilt_from_its_journal_and_marked_incomplete(sigil):
    # Slow calls: the run is still going while `sessions list` starts, even on a loaded machine.
    proc = start(sigil, "orchestrate", "--session", "sess_killed", LEAD_TASK,
                 env={"SIGIL_OFFLINE_LATENCY_MS": "1500"})
    _wait_for_tokens(sigil, "sess_killed", proc)
    listing = sigil("sessions", "list")
    assert "running" in listing.stdout.split("sess_killed", 1)[1].splitlines()[0]
    proc.kill()
    proc.wait()
    assert not (sigil.sessions / "sess_killed.json").exists()
    journal = [json.loads(x) for x in
               (sigil.sessions / "sess_killed.jsonl").read_text().splitlines() if x]
    used = max(e["budget_snapshot"]["used"] for e in journal)
    row = sigil("sessions", "list").stdout.split("sess_killed", 1)[1].splitlines()[0]
    assert "incomplete" in row
    assert f" {used:,} " in row and used > 0
    assert LEAD_TASK[:40] in row
    shown = sigil("sessions", "show", "sess_killed")
    assert shown.returncode == 0
    head = shown.stdout.splitlines()[0]
    assert "incomplete" in head and f"pid {proc.pid}" in head
    last = journal[-1]
    assert f"last operation: {last['component']}/{last['operation']}" in head
