"""Fixtures of the memory_sqlite tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from memory_helpers import make_memory_cli


@pytest.fixture
def memory_cli(tmp_path):
    """``memory_cli("memory", "list")``: the real `sigil` in a subprocess, own SIGIL_HOME."""
    return make_memory_cli(tmp_path)
