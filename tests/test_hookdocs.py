"""docs/hooks.md is generated from hookspecs.py: they never disagree, and every hook has an
example that at least compiles."""

from __future__ import annotations

import ast
from pathlib import Path

from sigil_core import hookspecs
from sigil_core.hookdocs import EXAMPLES, render

DOC = Path(__file__).resolve().parents[1] / "docs" / "hooks.md"


def test_the_hook_reference_is_in_sync_with_the_hookspecs():
    assert DOC.read_text() == render(), (
        "docs/hooks.md is stale: run `python -m sigil_core.hookdocs > docs/hooks.md`")


def test_every_hook_is_documented_with_an_example_that_parses():
    hooks = {n for n in vars(hookspecs) if n.startswith("sigil_")}
    assert hooks == set(EXAMPLES)
    for name, example in EXAMPLES.items():
        tree = ast.parse(example)
        assert any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
                   for node in ast.walk(tree)), name
        assert hookspecs.__dict__[name].__doc__, name
