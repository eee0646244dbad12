"""Hybrid ranking: a vector top-k and a full-text top-k fused into one list.

Two modes:

* ``weighted`` (the default): normalised score fusion. The vector side's cosine is mapped to
  [0, 1] from the embedder's similarity floor up, ``(sim - floor) / (1 - floor)``; the full-text
  side's bm25 is divided by the best bm25 of the query; an item scores
  ``w * vector + (1 - w) * text`` with ``w`` the embedder's ``vector_weight``. A strong
  semantic match is no longer outranked by an item that only shares an incidental word, and
  among several lexical matches the vector side still decides.
* ``rrf``: reciprocal rank fusion (Cormack, Clarke and Büttcher 2009): each list contributes
  ``1 / (RRF_K + rank)``; scores need no calibration, but a weak full-text hit counts as much as
  a strong semantic one.

bench/memory_quality.py measures both against each half alone on a labelled set.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, TypeVar

import attrs

K = TypeVar("K", bound=Hashable)

#: Reciprocal rank fusion constant (Cormack et al.); 60 is the usual choice.
RRF_K = 60
MODES = ("weighted", "rrf")
DEFAULT_MODE = "weighted"
#: Share of the vector side in ``weighted`` fusion when the embedder does not set its own
#: ``vector_weight``.
VECTOR_WEIGHT = 0.5


@attrs.define
class Fused:
    key: Hashable
    score: float
    vector_rank: int | None = None
    text_rank: int | None = None
    similarity: float | None = None


def fuse(vector_hits: Sequence[tuple[K, float]], text_hits: Sequence[Any], k: int, *,
         mode: str = "rrf", floor: float = 0.0, vector_weight: float = VECTOR_WEIGHT
         ) -> list[Fused]:
    """The ``k`` best keys of both lists, best first.

    ``vector_hits``: ``(key, cosine)`` best first, already cut at the embedder's minimum
    similarity ``floor``. ``text_hits``: keys best first, or ``(key, bm25)`` with bm25 > 0 best
    first (``weighted`` needs the scores; bare keys count as equal scores)."""
    pairs = [(h, 1.0) if not isinstance(h, tuple) else (h[0], float(h[1])) for h in text_hits]
    vranks = {key: i for i, (key, _) in enumerate(vector_hits, 1)}
    sims = dict(vector_hits)
    tranks = {key: i for i, (key, _) in enumerate(pairs, 1)}
    scores: dict[Any, float] = {}
    if mode == "rrf":
        for rank, (key, _) in enumerate(vector_hits, 1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
        for rank, (key, _) in enumerate(pairs, 1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
    elif mode == "weighted":
        span = max(1e-9, 1.0 - floor)
        best_text = max((score for _, score in pairs), default=0.0) or 1.0
        for key, sim in vector_hits:
            scores[key] = vector_weight * min(1.0, max(0.0, (sim - floor) / span))
        for key, score in pairs:
            scores[key] = scores.get(key, 0.0) + (1.0 - vector_weight) * max(0.0, score) / best_text
    else:
        raise ValueError(f"unknown fusion mode {mode!r}; one of {', '.join(MODES)}")
    # Ties (e.g. equal scores) keep the vector side's order, then the text side's.
    order = {key: n for n, key in enumerate([*vranks, *[key for key, _ in pairs]])}
    best = sorted(scores, key=lambda key: (-scores[key], order[key]))[:k]
    return [Fused(key, scores[key], vranks.get(key), tranks.get(key), sims.get(key))
            for key in best]
