"""Tree of Thoughts for Sigil: the ``tree_of_thoughts`` reasoning strategy, as a plugin.

The search itself (:func:`bfs`) does not depend on Sigil; :mod:`.game24` is the reference's
benchmark task and :mod:`.strategy` wires the search to a Sigil run.
"""

from .search import (
    VALUE_SCALE, LevelInfo, Node, SearchResult, bfs, greedy, judgements_value, sampler,
    value_evaluator,
)

__all__ = [
    "VALUE_SCALE", "LevelInfo", "Node", "SearchResult", "bfs", "greedy", "judgements_value",
    "sampler", "value_evaluator",
]
