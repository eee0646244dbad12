"""`sigil batch`: many orchestrations from one file, through the real CLI (offline model)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sigil_core.batch import SharedBudget, load_tasks, session_id_for
from sigil_core.budget import BudgetTracker
from sigil_core.errors import BudgetExhaustedError, UsageError
from sigil_core.model import TokenUsage

LEAD = "Qualify this lead: {name}, CTO at Company {i}, interested in enterprise plan"


def write_tasks(path: Path, n: int, **extra) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"t{i:04d}", "task": LEAD.format(name=f"Person {i}", i=i),
                                 **extra}) + "\n")
    return path


def results(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


# ------------------------------------------------------------------ the file


@pytest.mark.parametrize("content, message", [
    ('{"task": "a"}\n{"task": \n', "tasks.jsonl:2: not valid JSON"),
    ('{"task": ""}\n', 'tasks.jsonl:1: "task" must be a non-empty string'),
    ('{"id": 1, "task": "a"}\n{"id": "1", "task": "b"}\n', "id '1' is already used on line 1"),
    ('{"task": "a", "budgte": 5}\n', "unknown key 'budgte'"),
    ('{"task": "a", "budget": -5}\n', '"budget" must be a positive whole number'),
    ('["a"]\n', "expected a JSON object"),
    ("\n\n", "has no tasks"),
])
def test_bad_batch_files_name_the_line(tmp_path, content, message):
    path = tmp_path / "tasks.jsonl"
    path.write_text(content)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_tasks(path)


def test_csv_with_a_task_column_and_default_ids(tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("task,agent,budget\nQualify A,,\nQualify B,lead_qualifier,5000\n")
    tasks = load_tasks(path)
    assert [(t.id, t.task, t.agent, t.budget) for t in tasks] == [
        ("1", "Qualify A", None, None), ("2", "Qualify B", "lead_qualifier", 5000)]
    (tmp_path / "bad.csv").write_text("prompt\nhello\n")
    with pytest.raises(UsageError, match="needs a 'task' column"):
        load_tasks(tmp_path / "bad.csv")


def test_session_ids_are_safe_and_distinct_per_attempt():
    assert session_id_for("batch_x", "lead 7/\u00fc") == "batch_x_lead-7"
    assert session_id_for("batch_x", "a", 2) == "batch_x_a_a2"


def test_runs_sharing_a_budget_never_reserve_past_it():
    pool = SharedBudget(1000)
    a, b = BudgetTracker(800, pool=pool), BudgetTracker(800, pool=pool)
    ra = a.reserve("reasoning", 300, 300)          # 600 of the pool
    with pytest.raises(BudgetExhaustedError):
        b.reserve("reasoning", 390, 100)           # 490 > the 400 the pool has left
    rb = b.reserve("reasoning", 100, 1000)         # capped to what the pool has left
    assert rb.tokens == 400 and pool.available == 0
    a.commit(ra, TokenUsage(250, 50))
    b.release(rb)
    assert (pool.used, pool.reserved, pool.available) == (300, 0, 700)


# ------------------------------------------------------------------ local engine, real CLI


def test_two_hundred_tasks_at_concurrency_fifty_within_a_total_budget(sigil, tmp_path):
    tasks = write_tasks(sigil.cwd / "leads.jsonl", 200)
    proc = sigil("batch", str(tasks), "--concurrency", "50", "--budget-total", "1000000",
                 env={"SIGIL_OFFLINE_LATENCY_MS": "200"}, timeout=600)
    out = sigil.cwd / "outputs" / "batches" / "leads.results.jsonl"
    rows = results(out)
    assert proc.returncode in (0, 1), proc.stderr
    assert sorted(r["id"] for r in rows) == [f"t{i:04d}" for i in range(200)]
    assert sum(r["tokens"] for r in rows) <= 1_000_000
    # Every task that ran is a normal session whose token total is the one in the results.
    for row in rows[:20]:
        record = json.loads((sigil.sessions / f"{row['session_id']}.json").read_text())
        assert record["summary"]["total_tokens"] == row["tokens"]
        assert set(row) >= {"id", "session_id", "exit_code", "success", "output", "tokens",
                            "duration_s", "error_code"}
    assert "200 of 200 task(s) run" in proc.stderr
    assert proc.returncode == (0 if all(r["success"] for r in rows) else 1)


def test_a_spent_total_budget_leaves_tasks_unstarted_and_never_overruns(sigil):
    tasks = write_tasks(sigil.cwd / "leads.jsonl", 30)
    proc = sigil("batch", str(tasks), "--concurrency", "3", "--budget-total", "20000")
    rows = results(sigil.cwd / "outputs" / "batches" / "leads.results.jsonl")
    assert proc.returncode == 1
    assert sum(r["tokens"] for r in rows) <= 20_000
    assert len(rows) < 30 and "not started" in proc.stderr


def test_ctrl_c_stops_launching_and_resume_runs_only_the_rest(sigil):
    tasks = write_tasks(sigil.cwd / "leads.jsonl", 40)
    out = sigil.cwd / "outputs" / "batches" / "leads.results.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigil_core", "batch", str(tasks), "--concurrency", "4"],
        cwd=sigil.cwd, env={**sigil.env, "SIGIL_OFFLINE_LATENCY_MS": "150"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or len(results(out)) < 6):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopping: no new tasks" in err
    first = results(out)
    assert 6 <= len(first) < 40
    assert len({r["id"] for r in first}) == len(first)

    again = sigil("batch", str(tasks), "--concurrency", "8")
    assert again.returncode == 2 and "--resume" in again.stderr  # never silently re-run

    resumed = sigil("batch", str(tasks), "--concurrency", "8", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {len(first)} task(s) already in" in resumed.stderr
    rows = results(out)
    assert sorted(r["id"] for r in rows) == [f"t{i:04d}" for i in range(40)]
    assert rows[: len(first)] == first  # what was there is kept as it was


def test_one_failure_does_not_stop_the_batch_unless_fail_fast(sigil):
    path = sigil.cwd / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [
        {"id": "ok1", "task": LEAD.format(name="A", i=1)},
        {"id": "bad", "task": "Qualify anyone", "agent": "no_such_agent"},
        {"id": "ok2", "task": LEAD.format(name="B", i=2)},
        {"id": "ok3", "task": LEAD.format(name="C", i=3)},
    ]) + "\n")
    proc = sigil("batch", str(path), "--concurrency", "1")
    rows = {r["id"]: r for r in results(sigil.cwd / "outputs" / "batches" /
                                        "mixed.results.jsonl")}
    assert proc.returncode == 1
    assert set(rows) == {"ok1", "bad", "ok2", "ok3"}
    assert rows["bad"]["exit_code"] == 2 and "no_such_agent" in rows["bad"]["error"]

    proc = sigil("batch", str(path), "--concurrency", "1", "--fail-fast",
                 "--output", "ff.jsonl")
    rows = results(sigil.cwd / "ff.jsonl")
    assert proc.returncode == 1
    assert [r["id"] for r in rows] == ["ok1", "bad"]


def test_bad_input_is_one_line_and_exit_2(sigil):
    (sigil.cwd / "t.jsonl").write_text('{"task": "x"}\nnot json\n')
    proc = sigil("batch", "t.jsonl")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        ("Error: t.jsonl:2: not valid JSON (Expecting value); each line must be one object "
        'such as {"task": "..."}')]
    proc = sigil("batch", "missing.jsonl")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


# ------------------------------------------------------------------ local engine, processes


def _procs_workers(driver: int) -> list[int]:
    """Pids of the `--processes` workers the driver ``driver`` started."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True,
                         check=False).stdout
    pids = []
    for line in out.splitlines()[1:]:
        pid, ppid, args = line.split(None, 2)
        if int(ppid) == driver and "sigil_core.batch_procs" in args:
            pids.append(int(pid))
    return pids


def test_processes_share_the_slots_and_a_total_far_below_concurrency_times_budget(sigil):
    tasks = write_tasks(sigil.cwd / "leads.jsonl", 60)
    # 300,000 tokens would allot at most one task of the default 256,000 at a time: after the
    # first successes each task is allotted twice the most one has used, so slots fill up.
    proc = sigil("batch", str(tasks), "--concurrency", "20", "--processes", "2",
                 "--budget-total", "300000", "--use", "memory_sqlite",
                 env={"SIGIL_OFFLINE_LATENCY_MS": "100"}, timeout=600)
    out = sigil.cwd / "outputs" / "batches" / "leads.results.jsonl"
    rows = results(out)
    assert proc.returncode == 0, proc.stderr
    assert sorted(r["id"] for r in rows) == [f"t{i:04d}" for i in range(60)]
    assert sum(r["tokens"] for r in rows) <= 300_000
    assert len({r["worker"] for r in rows}) == 2  # both processes took tasks
    local = {"id", "session_id", "exit_code", "success", "output", "tokens", "duration_s",
             "error_code", "attempts"}
    assert all(set(r) - {"worker"} == local for r in rows)  # the shape of every engine
    for r in rows:  # every task is a normal session in the one outputs folder
        record = json.loads((sigil.sessions / f"{r['session_id']}.json").read_text())
        assert record["summary"]["total_tokens"] == r["tokens"]
    # Many tasks overlapped (a total of 300,000 at the default 256,000 each would have run
    # them one at a time): read from the sessions' own start and end times.
    spans = sorted((r["duration_s"], r["id"]) for r in rows)
    assert sum(d for d, _ in spans) > 2 * _wall(sigil, rows)


def _wall(sigil, rows) -> float:
    """Seconds from the first session's start to the last one's end."""
    from datetime import datetime

    starts, ends = [], []
    for r in rows:
        record = json.loads((sigil.sessions / f"{r['session_id']}.json").read_text())
        events = record["events"]
        starts.append(datetime.fromisoformat(events[0]["timestamp"]))
        ends.append(datetime.fromisoformat(events[-1]["timestamp"]))
    return (max(ends) - min(starts)).total_seconds()


def test_a_killed_worker_process_has_its_tasks_retried_once(sigil):
    tasks = write_tasks(sigil.cwd / "leads.jsonl", 24)
    out = sigil.cwd / "outputs" / "batches" / "leads.results.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigil_core", "batch", str(tasks), "--processes", "2",
         "--concurrency", "6"],
        cwd=sigil.cwd, env={**sigil.env, "SIGIL_OFFLINE_LATENCY_MS": "300"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not out.exists() or len(results(out)) < 3):
        time.sleep(0.1)
    pids = _procs_workers(proc.pid)
    assert len(pids) == 2, pids
    os.kill(pids[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    rows = results(out)
    assert sorted(r["id"] for r in rows) == [f"t{i:04d}" for i in range(24)], err
    retried = [r for r in rows if r["attempts"] == 2]
    assert retried and all(r["session_id"].endswith("_a2") for r in retried)
    assert all(r["success"] for r in rows)
    assert proc.returncode == 0, err


def test_ctrl_c_to_the_process_group_stops_launching_and_resume_runs_the_rest(sigil):
    tasks = write_tasks(sigil.cwd / "leads.jsonl", 40)
    out = sigil.cwd / "outputs" / "batches" / "leads.results.jsonl"
    # A terminal's Ctrl-C reaches every process of the foreground group, workers included.
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigil_core", "batch", str(tasks), "--processes", "2",
         "--concurrency", "4"],
        cwd=sigil.cwd, env={**sigil.env, "SIGIL_OFFLINE_LATENCY_MS": "150"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or len(results(out)) < 6):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopping: no new tasks" in err
    first = results(out)
    assert 6 <= len(first) < 40
    # The tasks running at the Ctrl-C finished (the workers ignored it): all succeeded.
    assert all(r["success"] for r in first), first
    resumed = sigil("batch", str(tasks), "--processes", "2", "--concurrency", "8", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    rows = results(out)
    assert sorted(r["id"] for r in rows) == [f"t{i:04d}" for i in range(40)]


def test_allotments_follow_what_tasks_need_and_never_exceed_the_total():
    from types import SimpleNamespace

    from sigil_core.batch import BatchSettings, BatchTask, Dispatcher, Progress

    class Rows:
        def __init__(self):
            self.rows = []

        def write(self, row):
            self.rows.append(row)

    tasks = [BatchTask(id=f"t{i}", task="x") for i in range(10)]
    config = SimpleNamespace(budget=SimpleNamespace(total=100_000))
    books = Dispatcher(tasks, BatchSettings(budget_total=150_000), config, Rows(),
                       Progress(10, live=False, interval=3600, stream=io.StringIO()))
    first = books.take()
    assert first[2] == 100_000                    # nothing known yet: the run budget
    assert books.take()[2] == 50_000              # capped by what is left unallotted
    assert books.take() is None                   # nothing left until one gives back
    books.finished({"id": "t0", "success": True, "tokens": 6_000}, 100_000)
    assert books.unallotted == 94_000
    allotted = [books.take()[2] for _ in range(7)]
    assert allotted == [12_000] * 7               # twice the most a task has used
    books.finished({"id": "t2", "success": False, "tokens": 12_000,
                    "error_code": "TOKEN_001"}, 12_000)
    books.finished({"id": "t1", "success": True, "tokens": 5_000}, 50_000)
    assert books.allotment(tasks[9]) == 24_000    # ran out: the next ones get twice as much
    in_flight = sum(allotted[1:])
    assert books.unallotted + in_flight == 150_000 - 6_000 - 12_000 - 5_000


# ------------------------------------------------------------------ ray engine


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A real local Ray cluster (`ray start --head` on 127.0.0.1), stopped afterwards."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    ray_bin = Path(sys.executable).with_name("ray")
    temp = tmp_path_factory.mktemp("ray")
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = subprocess.run(
        [str(ray_bin), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp}"], capture_output=True, text=True, timeout=180, env=env, check=False)
    if start.returncode != 0:
        pytest.skip(f"ray start failed: {start.stderr[-400:]}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, timeout=120,
                       env=env, check=False)


def _worker_pids() -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=False).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "ray::BatchWorker" in line]


def _ray_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout
    return [line for line in out.splitlines() if "ray::" in line]


def test_ray_engine_runs_every_task_with_the_local_result_shape(sigil, ray_cluster):
    tasks = write_tasks(sigil.cwd / "leads.jsonl", 12)
    proc = sigil("batch", str(tasks), "--engine", "ray", "--address", ray_cluster,
                 "--workers", "2", "--concurrency", "3", "--sessions", "gather",
                 env={"SIGIL_OFFLINE_LATENCY_MS": "100"}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = results(sigil.cwd / "outputs" / "batches" / "leads.results.jsonl")
    assert sorted(r["id"] for r in rows) == [f"t{i:04d}" for i in range(12)]
    local = {"id", "session_id", "exit_code", "success", "output", "tokens", "duration_s",
             "error_code", "attempts"}
    assert all(set(r) - {"worker"} == local for r in rows)
    assert len({r["worker"] for r in rows}) == 2  # both actors took tasks
    for r in rows:  # gathered back from the workers into this outputs folder
        record = json.loads((sigil.sessions / f"{r['session_id']}.json").read_text())
        assert record["summary"]["total_tokens"] == r["tokens"]


def test_ray_worker_killed_mid_batch_its_tasks_are_retried_once(sigil, ray_cluster):
    tasks = write_tasks(sigil.cwd / "leads.jsonl", 24)
    out = sigil.cwd / "outputs" / "batches" / "leads.results.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigil_core", "batch", str(tasks), "--engine", "ray",
         "--address", ray_cluster, "--workers", "2", "--concurrency", "3"],
        cwd=sigil.cwd, env={**sigil.env, "SIGIL_OFFLINE_LATENCY_MS": "300"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not out.exists() or len(results(out)) < 3):
        time.sleep(0.2)
    assert out.exists() and len(results(out)) >= 3, "the batch wrote no results in 300 s"
    # Ray renames an actor's process (setproctitle) on its own schedule: look for a while,
    # not once (a loaded machine once showed none at the first look).
    pids: list[int] = []
    while time.monotonic() < deadline and not pids and proc.poll() is None:
        pids = _worker_pids()
        time.sleep(0.1)
    assert pids, f"no BatchWorker process found; ps shows: {_ray_processes()}"
    os.kill(pids[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    rows = results(out)
    ids = [r["id"] for r in rows]
    assert sorted(ids) == [f"t{i:04d}" for i in range(24)], err  # none lost, none twice
    retried = [r for r in rows if r["attempts"] == 2]
    assert retried and all(r["session_id"].endswith("_a2") for r in retried)
    assert proc.returncode == 0, err


def test_a_worker_process_tunes_its_collector_for_many_runs(tmp_path):
    """A --processes worker or a Ray actor runs many runs at once, as the driver's process
    does: its collector is set the same way (launch.tune_gc_for_many_runs)."""
    script = ("import gc\nfrom sigil_core.batch import worker_orchestrator\n"
              "worker_orchestrator()\n"
              "assert gc.isenabled() and gc.get_freeze_count() > 0, 'not frozen'\n"
              "assert gc.get_threshold()[0] == 50_000, gc.get_threshold()\n")
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True,
                          text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "SIGIL_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr
