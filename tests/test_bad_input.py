"""Bad input: a clear one-line error, exit 2, no traceback, nothing written outside outputs/."""

from __future__ import annotations

import os

import pytest
from core_cli import LEAD_TASK


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def _assert_clean_failure(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.startswith("Error:") or "Error:" in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.mark.parametrize("args, needle", [
    (["orchestrate", ""], "task is empty"),
    (["orchestrate", "   "], "task is empty"),
    (["orchestrate", "--budget", "0", LEAD_TASK], "budget"),
    (["orchestrate", "--budget", "-5", LEAD_TASK], "budget"),
    (["orchestrate", "--budget", "lots", LEAD_TASK], "--budget"),
    (["orchestrate", "--agent", "nobody", LEAD_TASK], "unknown agent"),
    (["orchestrate", "--agent", "../etc/passwd", LEAD_TASK], "invalid agent name"),
    (["orchestrate", "--session", "../escape", LEAD_TASK], "invalid session id"),
    (["orchestrate", "--session", "a/b", LEAD_TASK], "invalid session id"),
    (["orchestrate", "--session", "..", LEAD_TASK], "invalid session id"),
])
def test_bad_arguments_exit_2_and_write_nothing(sigil, args, needle):
    before = _files(sigil.cwd.parent)
    proc = sigil(*args)
    _assert_clean_failure(proc, needle)
    after = [f for f in _files(sigil.cwd.parent) if f not in before]
    assert all(str(f).startswith("work/outputs") for f in after), after
    assert not list(sigil.cwd.glob("outputs/sessions/*.json*"))


def test_invalid_config_names_the_file_and_key(sigil):
    (sigil.home / "config.yaml").write_text("budget:\n  totl: 5\n")
    proc = sigil("orchestrate", LEAD_TASK)
    _assert_clean_failure(proc, "config.yaml", "totl", "SYSTEM_002")


def test_config_value_of_wrong_type_names_the_path(sigil):
    (sigil.home / "config.yaml").write_text("logging:\n  buffer_size: many\n")
    proc = sigil("orchestrate", LEAD_TASK)
    _assert_clean_failure(proc, "logging.buffer_size")


def test_config_that_is_not_yaml(sigil):
    (sigil.home / "config.yaml").write_text("budget: [unclosed\n")
    proc = sigil("orchestrate", LEAD_TASK)
    _assert_clean_failure(proc, "not valid YAML", "line")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable_config(sigil):
    cfg = sigil.home / "config.yaml"
    cfg.write_text("budget:\n  total: 1000\n")
    cfg.chmod(0)
    proc = sigil("orchestrate", LEAD_TASK)
    _assert_clean_failure(proc, "cannot read config")


def test_missing_explicit_config(sigil):
    proc = sigil("orchestrate", LEAD_TASK, env={"SIGIL_CONFIG": str(sigil.home / "nope.yaml")})
    _assert_clean_failure(proc, "does not exist")


def test_bad_environment_variable(sigil):
    proc = sigil("orchestrate", LEAD_TASK, env={"SIGIL_TOKEN_BUDGET": "abc"})
    _assert_clean_failure(proc, "SIGIL_TOKEN_BUDGET")


def test_outputs_dir_not_writable(sigil):
    blocker = sigil.cwd / "outputs"
    blocker.write_text("a file where the outputs folder should be")
    proc = sigil("orchestrate", LEAD_TASK)
    _assert_clean_failure(proc, "not writable")
    assert blocker.read_text().startswith("a file")


def test_existing_session_is_not_overwritten(sigil):
    assert sigil("orchestrate", "--session", "sess_once", LEAD_TASK).returncode == 0
    before = (sigil.sessions / "sess_once.json").read_text()
    proc = sigil("orchestrate", "--session", "sess_once", LEAD_TASK)
    _assert_clean_failure(proc, "already exists")
    assert (sigil.sessions / "sess_once.json").read_text() == before
