"""Text embedders registered through ``sigil_register_embedders``.

* :class:`HashingEmbedder` (``hashing``): the default. Dependency-free and fast: signed feature
  hashing of stemmed words, word pairs and character trigrams into 384 dimensions, sublinear
  term weights, L2-normalised. Lexical, not semantic, but it matches inflections and shared
  phrases, which is what consolidation and recall of one's own facts mostly need.
* ``minilm`` (semantic, all-MiniLM-L6-v2 on onnxruntime) comes from the ``embedder_minilm``
  plugin, installed with the rest of Sigil. Higher ``priority``, so it is picked when it loads
  (``hashing`` otherwise, with one warning); a database built with another embedder then asks
  for ``sigil memory reindex``.

Any plugin can register its own: an object with ``name``, ``dimensions`` and
``embed(texts) -> list[list[float]]`` (optionally ``priority`` and ``min_similarity``).
"""

from __future__ import annotations

from typing import Any

# The hashing embedder, the text rules and choosing an embedder are shared by every memory
# backend (sigil_core.memory); re-exported here for this plugin's callers.
from sigil_core.memory.embedders import HashingEmbedder, choose
from sigil_core.memory.text import STOPWORDS, content_terms, stem, words

__all__ = ["STOPWORDS", "HashingEmbedder", "builtin_embedders", "choose",
           "content_terms", "stem", "words"]


def builtin_embedders() -> list[Any]:
    return [HashingEmbedder()]
