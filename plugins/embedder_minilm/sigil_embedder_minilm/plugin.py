"""Registers the ``minilm`` embedder. Nothing heavy is imported here: onnxruntime, tokenizers
and the model load on the first embedding, so ``sigil --help`` does not pay for them."""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl
def sigil_register_embedders(register: Any) -> None:
    """``minilm``: semantic sentence embeddings (384 dims), preferred over ``hashing``."""
    from .embedder import MiniLMEmbedder

    register(MiniLMEmbedder())
