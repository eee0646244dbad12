"""Testing plugins (public API): what this repository's own plugin tests use.

* :class:`ScriptedProvider`: a provider answering from a script (texts, dicts for structured
  output, exceptions, or functions of the request), with estimated token usage;
* :func:`make_run`: a real :class:`~sigil_core.run.Run` for unit-testing a hook or strategy;
  :func:`make_host`: a plugin host with the builtins and your plugins registered in process;
* :class:`SigilCLI`: the real ``sigil`` command in a temporary home, for end-to-end tests;
* pytest fixtures (loaded automatically): ``sigil_cli`` (a :class:`SigilCLI`) and
  ``sigil_home`` (a temporary SIGIL_HOME and working folder for in-process tests).

For the local API servers that provider plugins test against (no SDK imported):

* :func:`~sigil_core.testing.schema_instance.instance_for`: a valid, deterministic instance of a
  JSON Schema, so a test server can answer any structured request Sigil makes;
* :data:`LEAD_ANSWERS`: the path of a JSON file scripting the lead example's plan and contract
  answers, keyed by the tool (function) name Sigil's providers derive from the schema;
* :func:`sigil_replay`: a pytest fixture that runs a recorded task against its cassette (see
  :mod:`sigil_core.replay`); ``from sigil_core.testing import sigil_replay`` in a conftest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .harness import (
    ScriptedProvider,
    SigilCLI,
    all_plugins_but,
    events_named,
    make_host,
    make_run,
    run_in_worker,
)

__all__ = ["LEAD_ANSWERS", "ScriptedProvider", "SigilCLI", "all_plugins_but", "events_named",
           "make_host", "make_run", "run_in_worker"]

#: Scripted answers for ``Qualify this lead: John Smith, CEO at Acme Corp, ...``.
LEAD_ANSWERS = Path(__file__).with_name("lead_answers.json")


def __getattr__(name: str) -> Any:
    # The fixture needs pytest; the test servers that import this package do not.
    if name == "sigil_replay":
        from sigil_core.testing.fixtures import sigil_replay

        return sigil_replay
    raise AttributeError(name)
