"""Hybrid ranking: a vector top-k and a full-text top-k fused by reciprocal rank.

Reciprocal rank fusion (Cormack, Clarke and Büttcher 2009): each list contributes
``1 / (RRF_K + rank)`` per item; scores of the two lists need no calibration against each other.
"""

from __future__ import annotations

from typing import Hashable, Sequence, TypeVar

import attrs

K = TypeVar("K", bound=Hashable)

#: Reciprocal rank fusion constant (Cormack et al.); 60 is the usual choice.
RRF_K = 60


@attrs.define
class Fused:
    key: Hashable
    score: float
    vector_rank: int | None = None
    text_rank: int | None = None
    similarity: float | None = None


def fuse(vector_hits: Sequence[tuple[K, float]], text_hits: Sequence[K], k: int) -> list[Fused]:
    """The ``k`` best keys of both lists, best first. ``vector_hits`` are ``(key, cosine)``
    best first (already cut at the embedder's minimum similarity); ``text_hits`` keys best
    first."""
    scores: dict[K, float] = {}
    for rank, (key, _) in enumerate(vector_hits, 1):
        scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
    for rank, key in enumerate(text_hits, 1):
        scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
    best = sorted(scores, key=lambda key: -scores[key])[:k]
    vranks = {key: i for i, (key, _) in enumerate(vector_hits, 1)}
    sims = dict(vector_hits)
    tranks = {key: i for i, key in enumerate(text_hits, 1)}
    return [Fused(key, scores[key], vranks.get(key), tranks.get(key), sims.get(key))
            for key in best]
