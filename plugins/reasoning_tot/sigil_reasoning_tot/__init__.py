"""Search strategies for Sigil: ``tree_of_thoughts`` and ``mcts``, as a plugin.

The searches themselves (:func:`bfs`, :func:`mcts`) do not depend on Sigil; :mod:`.game24` is the reference's
benchmark task and :mod:`.strategy` wires the search to a Sigil run.

The names below are imported on first use: Sigil imports this package (through the entry
point) at every start, and ``sigil --help`` must stay fast.
"""

from typing import Any

_SEARCH = (
    "VALUE_SCALE", "LevelInfo", "Node", "SearchResult", "bfs", "greedy", "judgements_value",
    "sampler", "value_evaluator",
)
_MCTS = ("MCTSNode", "MCTSResult", "Simulation", "mcts")
__all__ = [  # noqa: RUF022 - search names, then MCTS names
    "VALUE_SCALE", "LevelInfo", "Node", "SearchResult", "bfs", "greedy", "judgements_value",
    "sampler", "value_evaluator", "MCTSNode", "MCTSResult", "Simulation", "mcts",
]


def __getattr__(name: str) -> Any:
    if name in _SEARCH:
        from . import search

        return getattr(search, name)
    if name in _MCTS:
        from . import mcts_search

        return getattr(mcts_search, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
