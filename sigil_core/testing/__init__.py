"""Helpers for the local API servers that provider plugins test against (no SDK imported).

* :func:`~sigil_core.testing.schema_instance.instance_for`: a valid, deterministic instance of a
  JSON Schema, so a test server can answer any structured request Sigil makes;
* :data:`LEAD_ANSWERS`: the path of a JSON file scripting the lead example's plan and contract
  answers, keyed by the tool (function) name Sigil's providers derive from the schema.
"""

from __future__ import annotations

from pathlib import Path

#: Scripted answers for ``Qualify this lead: John Smith, CEO at Acme Corp, ...``.
LEAD_ANSWERS = Path(__file__).with_name("lead_answers.json")
