"""Helpers for sink_otel's tests: the core's CLI harness without the caller's OTEL_* variables.
(Not named conftest: the core's tests import their own ``conftest`` by name.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sigil_core.testing import SigilCLI

LEAD = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"


class OtelCLI(SigilCLI):
    """``sigil`` as a subprocess (see :class:`sigil_core.testing.SigilCLI`), also without the
    caller's OpenTelemetry settings."""

    DROPPED = (*SigilCLI.DROPPED, "OTEL_", "TRACEPARENT", "TRACESTATE")

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        # A generous export bound: tests about the bound set their own; the others must not
        # fail because a loaded machine answered in 2.1 s.
        self.write_config("otel:\n  flush_timeout_ms: 30000\n")

    def records(self) -> list[dict[str, Any]]:
        """Every session record (``.json``) of the runs so far."""
        return [json.loads(p.read_text()) for p in sorted(self.sessions.glob("*.json"))]
