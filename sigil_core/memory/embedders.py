"""The embedder every memory backend can fall back on, and choosing among registered ones.

Embedders come through ``sigil_register_embedders`` (any plugin may add one); a backend asks
:func:`choose` for the configured one. :class:`HashingEmbedder` lives here, not in a backend, so
that every backend has the same dependency-free default and vectors copied between backends
(``sigil memory migrate``) stay comparable.
"""

from __future__ import annotations

import itertools
import math
import threading
import weakref
import zlib
from collections.abc import Sequence
from typing import Any

from .text import content_terms


class HashingEmbedder:
    """Signed feature hashing of stemmed words, word pairs and character trigrams into 384
    dimensions, sublinear term weights, L2-normalised. Lexical, not semantic, but it matches
    inflections and shared phrases, which is what consolidation and recall of one's own facts
    mostly need."""

    name = "hashing"
    dimensions = 384
    priority = 0
    #: Below this cosine a vector hit is noise for this embedder. Calibrated on
    #: bench/memory_quality.py: at 0.08, ~15 memories passed per unrelated query; at 0.12 ~6,
    #: with the same recall (what hashing finds, it finds above 0.12).
    min_similarity = 0.12
    #: Share of the vector side in weighted fusion: lexical vectors add little to bm25.
    vector_weight = 0.3

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
        for a, b in itertools.pairwise(terms):
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


#: Embedders that could not load in this process, warned about once each.
_unavailable: dict[str, str] = {}
_warn_lock = threading.Lock()
#: Embedders whose ``ready()`` succeeded in this process: choosing them again loads nothing.
_loaded: weakref.WeakSet[Any] = weakref.WeakSet()


def _ranked(registry: dict[str, Any]) -> list[Any]:
    """Registered embedders, highest ``priority`` first (then by name)."""
    return sorted(registry.values(), key=lambda e: (getattr(e, "priority", 0), e.name),
                  reverse=True)


def first_choice(registry: dict[str, Any], name: str | None) -> Any:
    """The embedder :func:`choose` tries first (None when there is none): the one named in
    config, else the highest ``priority`` not already found unable to load."""
    if name:
        return registry.get(name)
    return next((e for e in _ranked(registry) if e.name not in _unavailable), None)


def chosen_already(registry: dict[str, Any], name: str | None) -> Any:
    """What :func:`choose` would return, when choosing loads nothing (the embedder is named,
    has no ``ready()``, or was loaded by an earlier choice); None when it would load a model.
    Every run of a process opens a store: only the first choice of the process needs a
    thread, the others need not leave the event loop."""
    if name:
        return choose(registry, name)  # a look-up: a named embedder loads when it embeds
    for embedder in _ranked(registry):
        if embedder.name in _unavailable:
            continue
        if getattr(embedder, "ready", None) is None or embedder in _loaded:
            return embedder
        return None
    return registry.get("hashing") or HashingEmbedder()


def choose(registry: dict[str, Any], name: str | None) -> Any:
    """The embedder named in config, else the registered one with the highest ``priority``
    that loads (the hashing embedder when none does).

    An embedder may have ``ready()``, which loads it and raises when it cannot (a missing
    native library, a damaged model file), and ``preload_modules``, the heavy modules loading
    imports (see :func:`sigil_core.memory.preload_embedder`). Unnamed, such an embedder is
    passed over with one warning on stderr per process; named in config, it is used, and its failure to embed is
    the store's MEMORY_004."""
    import sys

    from ..errors import ConfigError

    if name:
        if name not in registry:
            known = ", ".join(sorted(registry)) or "none"
            raise ConfigError(f"memory.embedder: unknown embedder {name!r}; registered: {known}")
        return registry[name]
    ranked = _ranked(registry)
    for embedder in ranked:
        ready = getattr(embedder, "ready", None)
        if embedder.name in _unavailable:
            continue
        if ready is None:
            return embedder
        try:
            ready()
        except Exception as exc:  # noqa: BLE001 - whatever stops it loading, fall back
            with _warn_lock:  # a preloading thread and open_store may both get here
                first = embedder.name not in _unavailable
                _unavailable[embedder.name] = str(exc)
            if first:
                fallback = next((e.name for e in ranked if e.name not in _unavailable),
                                "hashing")
                sys.stderr.write(f"Warning: embedder {embedder.name!r} cannot load ({exc}); "
                                 f"memory uses {fallback!r} instead\n")
            continue
        try:
            _loaded.add(embedder)
        except TypeError:  # not weak-referenceable (__slots__): chosen on a thread each time
            pass
        return embedder
    return registry.get("hashing") or HashingEmbedder()
