"""Full disks and file modes: what a run leaves behind when it cannot write, and who may read it.

The full disk is a real one: a small tmpfs mounted for the test (skipped with the reason when
this machine does not let the test mount one).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from core_cli import LEAD_TASK


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 256 KiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs",
                           str(mnt)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def _fill(mnt: Path, leave: int) -> None:
    """Fill the filesystem until ``leave`` bytes are free."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(mnt / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


def _assert_whole_lines(path: Path) -> int:
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"{path} ends with a torn line: {data[-80:]!r}"
    for line in data.splitlines():
        json.loads(line)
    return len(data.splitlines())


@pytest.mark.parametrize("leave", [8 * 1024, 20 * 1024, 36 * 1024])
def test_full_disk_exits_4_with_one_line_and_no_torn_jsonl(sigil, small_fs, leave):
    # The cassette (every LLM exchange, for sigil replay) is a JSONL file too.
    (sigil.home / "config.yaml").write_text("llm: {cassette: always}\n")
    _fill(small_fs, leave)
    out = sigil("orchestrate", LEAD_TASK, env={"SIGIL_OUTPUTS_DIR": str(small_fs)})
    assert out.returncode == 4, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr and "Logging error" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, out.stderr
    assert str(small_fs) in errors[0] and "No space left on device" in errors[0], errors[0]
    jsonl = list(small_fs.rglob("*.jsonl"))
    assert jsonl, list(small_fs.rglob("*"))
    for path in jsonl:
        _assert_whole_lines(path)
    # Space again: the next run appends whole lines to the same daily log and exits 0.
    (small_fs / "filler").unlink()
    again = sigil("orchestrate", LEAD_TASK, env={"SIGIL_OUTPUTS_DIR": str(small_fs)})
    assert again.returncode == 0, again.stderr
    for path in small_fs.rglob("*.jsonl"):
        _assert_whole_lines(path)


def test_torn_tail_of_the_daily_log_is_cut_on_next_open(sigil):
    first = sigil("orchestrate", LEAD_TASK)
    assert first.returncode == 0, first.stderr
    (daily,) = (sigil.cwd / "outputs" / "logs").glob("*.jsonl")
    lines = _assert_whole_lines(daily)
    with open(daily, "ab") as fh:
        fh.write(b'{"id": "log_torn", "timestam')  # what a crash mid-write leaves
    second = sigil("orchestrate", LEAD_TASK)
    assert second.returncode == 0, second.stderr
    assert _assert_whole_lines(daily) > lines


def _modes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode))
            for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("umask", ["0022", "0000"])
def test_files_sigil_creates_are_private_whatever_the_umask(sigil, umask):
    out = subprocess.run(["sh", "-c", f'umask {umask} && exec "$@"', "sh", *sigil.argv(
        "orchestrate", LEAD_TASK)], cwd=sigil.cwd, env=sigil.env, capture_output=True,
        text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    outputs = sigil.cwd / "outputs"
    for rel, mode in _modes(outputs).items():
        path = outputs / rel
        want = "0o700" if path.is_dir() else "0o600"
        assert mode == want, f"{path} is {mode}, want {want}"
    assert list(outputs.rglob("*.jsonl")) and list(outputs.rglob("*.json"))


def test_jsonl_appender_cuts_a_torn_tail_and_writes_whole_lines_or_nothing(small_fs):
    from sigil_core.errors import StorageError
    from sigil_core.files import JsonlAppender

    path = small_fs / "session.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": ')  # a crash mid-line
    out = JsonlAppender(path)
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    out.append('{"d": 4}\n')
    _fill(small_fs, 6 * 1024)
    before = path.read_bytes()
    with pytest.raises(StorageError, match="No space left on device") as err:
        out.append("".join(json.dumps({"n": i, "pad": "x" * 100}) + "\n" for i in range(2000)))
    assert str(path) in str(err.value)
    assert path.read_bytes() == before  # nothing of the failed batch is left
    out.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_session_record_that_does_not_fit_names_its_file(small_fs):
    """The error of a failed write names no file: the record's sink says which one it was, so
    the run's one-line error points at the file even when the journal was written whole."""
    from types import SimpleNamespace

    from sigil_core.builtin.sinks import SessionJsonSink
    from sigil_core.errors import StorageError

    run = SimpleNamespace(config=SimpleNamespace(outputs_dir=small_fs), session_id="sess_rec",
                          ctx=SimpleNamespace(attempt=1))
    sink = SessionJsonSink().bind(run)
    sink.open(run)
    sink.lines = [json.dumps({"n": i, "pad": "x" * 200}) for i in range(200)]
    _fill(small_fs, 4 * 1024)
    with pytest.raises(StorageError, match="No space left on device") as err:
        sink.close(run, {"session_id": "sess_rec"})
    assert str(small_fs / "sessions" / "sess_rec.json") in str(err.value)
    assert not (small_fs / "sessions" / "sess_rec.json").exists()  # no half a record
