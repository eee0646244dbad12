"""Shared fixtures for the core's tests: a temp home and cwd, and a runner for the real CLI
(in core_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from core_cli import CLI


@pytest.fixture
def sigil(tmp_path: Path) -> CLI:
    return CLI(tmp_path)
