"""Helpers for the local API servers that provider plugins test against (no SDK imported).

* :func:`~sigil_core.testing.schema_instance.instance_for`: a valid, deterministic instance of a
  JSON Schema, so a test server can answer any structured request Sigil makes;
* :data:`LEAD_ANSWERS`: the path of a JSON file scripting the lead example's plan and contract
  answers, keyed by the tool (function) name Sigil's providers derive from the schema;
* :func:`sigil_replay`: a pytest fixture that runs a recorded task against its cassette (see
  :mod:`sigil_core.replay`); ``from sigil_core.testing import sigil_replay`` in a conftest.
"""

from __future__ import annotations

from pathlib import Path

#: Scripted answers for ``Qualify this lead: John Smith, CEO at Acme Corp, ...``.
LEAD_ANSWERS = Path(__file__).with_name("lead_answers.json")


def __getattr__(name: str):
    # The fixture needs pytest; the test servers that import this package do not.
    if name == "sigil_replay":
        from sigil_core.replay import sigil_replay

        return sigil_replay
    raise AttributeError(name)
