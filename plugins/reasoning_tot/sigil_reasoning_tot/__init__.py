"""Tree of Thoughts for Sigil: the ``tree_of_thoughts`` reasoning strategy, as a plugin.

The search itself (:func:`bfs`) does not depend on Sigil; :mod:`.game24` is the reference's
benchmark task and :mod:`.strategy` wires the search to a Sigil run.

The names below are imported on first use: Sigil imports this package (through the entry
point) at every start, and ``sigil --help`` must stay fast.
"""

from typing import Any

__all__ = [
    "VALUE_SCALE", "LevelInfo", "Node", "SearchResult", "bfs", "greedy", "judgements_value",
    "sampler", "value_evaluator",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import search

        return getattr(search, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
