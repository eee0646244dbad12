"""Fixtures for sink_otel's tests (prefixed ``otel_``): the real CLI in a temp folder and a real
OTLP/HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Appended, not prepended: the core's tests import their own ``conftest`` module by name.
sys.path.append(str(Path(__file__).parent))

from otel_helpers import OtelCLI
from otlp_receiver import Receiver


@pytest.fixture
def otel_cli(tmp_path: Path) -> OtelCLI:
    return OtelCLI(tmp_path)


@pytest.fixture
def otel_receiver():
    with Receiver() as receiver:
        yield receiver
