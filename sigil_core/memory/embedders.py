"""The embedder every memory backend can fall back on, and choosing among registered ones.

Embedders come through ``sigil_register_embedders`` (any plugin may add one); a backend asks
:func:`choose` for the configured one. :class:`HashingEmbedder` lives here, not in a backend, so
that every backend has the same dependency-free default and vectors copied between backends
(``sigil memory migrate``) stay comparable.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Sequence

from .text import content_terms


class HashingEmbedder:
    """Signed feature hashing of stemmed words, word pairs and character trigrams into 384
    dimensions, sublinear term weights, L2-normalised. Lexical, not semantic, but it matches
    inflections and shared phrases, which is what consolidation and recall of one's own facts
    mostly need."""

    name = "hashing"
    dimensions = 384
    priority = 0
    #: Below this cosine a vector hit is noise for this embedder (unrelated texts score ~0).
    min_similarity = 0.08

    def __init__(self, dimensions: int = 384) -> None:
        self.dimensions = dimensions

    def _features(self, text: str) -> dict[str, float]:
        terms = content_terms(text)
        feats: dict[str, float] = {}

        def add(key: str, weight: float) -> None:
            feats[key] = feats.get(key, 0.0) + weight

        for term in terms:
            add("w:" + term, 1.0)
            padded = f"<{term}>"
            if len(padded) > 4:
                for i in range(len(padded) - 2):
                    add("c:" + padded[i : i + 3], 0.25)
        for a, b in zip(terms, terms[1:]):
            add(f"b:{a} {b}", 0.7)
        return feats

    def embed_one(self, text: str) -> list[float]:
        dims = self.dimensions
        vec = [0.0] * dims
        for key, weight in self._features(text).items():
            raw = key.encode("utf-8")
            h = zlib.crc32(raw)
            sign = 1.0 if zlib.adler32(raw) & 1 else -1.0
            vec[h % dims] += sign * (1.0 + math.log(weight)) if weight >= 1 else sign * weight
        norm = math.sqrt(sum(v * v for v in vec))
        if norm == 0.0:
            return vec
        return [v / norm for v in vec]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.embed_one(t) for t in texts]


def choose(registry: dict[str, Any], name: str | None) -> Any:
    """The embedder named in config, else the registered one with the highest ``priority``
    (the hashing embedder when none is registered)."""
    from ..errors import ConfigError

    if name:
        if name not in registry:
            known = ", ".join(sorted(registry)) or "none"
            raise ConfigError(f"memory.embedder: unknown embedder {name!r}; registered: {known}")
        return registry[name]
    if not registry:
        return HashingEmbedder()
    return max(registry.values(), key=lambda e: (getattr(e, "priority", 0), e.name))
