"""Inputs from a hostile world: undecodable argv bytes, --output pointing at a device or FIFO."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest
from core_cli import LEAD_TASK


def test_undecodable_task_bytes_are_replaced_and_the_session_recorded(sigil):
    task = b"Qualify this lead: Jos\xe9 M\xfcller, CEO at Acme Corp \xff\xfe"
    proc = subprocess.run(sigil.argv("orchestrate", "--format", "json") + [task],
                          cwd=sigil.cwd, env=sigil.env, capture_output=True, timeout=120, check=False)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, stderr
    assert "surrogates not allowed" not in stderr and "disabled" not in stderr, stderr
    record = sigil.session_json()
    assert record["task"] == "Qualify this lead: Jos\ufffd M\ufffdller, CEO at Acme Corp \ufffd\ufffd"
    warning = [e for e in record["events"] if e["level"] == "warning"
               and e.get("metadata", {}).get("replaced_bytes")]
    assert warning and warning[0]["metadata"]["replaced_bytes"] == 4
    assert len(sigil.session_jsonl()) == len(record["events"])
    (daily,) = (sigil.cwd / "outputs" / "logs").glob("*.jsonl")
    # The daily aggregate stays valid UTF-8 (strict decoding) and holds the warning.
    assert warning[0]["id"] in daily.read_text(encoding="utf-8")


def _fifo(path):
    os.mkfifo(path)
    return path


def _char_device(path):
    if os.geteuid() != 0:
        pytest.skip("creating a character device needs root")
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # the same device as /dev/null
    return path


@pytest.mark.parametrize("make", [_fifo, _char_device], ids=["fifo", "char_device"])
def test_output_to_a_non_regular_file_is_refused(sigil, make):
    target = make(sigil.cwd / "target")
    before = os.lstat(target)
    proc = sigil("orchestrate", "--output", str(target), LEAD_TASK)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "not a regular file" in proc.stderr and str(target) in proc.stderr
    assert "Traceback" not in proc.stderr
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino,
                                                             before.st_rdev)


def test_output_to_a_new_path_or_a_regular_file_still_works(sigil):
    existing = sigil.cwd / "old.json"
    existing.write_text("{}")
    for target in (existing, sigil.cwd / "new.json"):
        proc = sigil("orchestrate", "--output", str(target), LEAD_TASK)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(target.read_text())["result"]["success"] is True
