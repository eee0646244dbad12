"""Builtin validation: deliverables and rules checked locally, no LLM call needed."""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl(trylast=True)
def sigil_validate(output: Any, contract: Any, attempt: int) -> Any:
    from sigil_core.contracts import check_contract

    return check_contract(output, contract, attempt)
