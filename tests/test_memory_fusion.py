"""Fusion of the vector and full-text halves (sigil_core.memory.fusion)."""

from __future__ import annotations

import pytest

from sigil_core.memory.fusion import fuse


def test_weighted_fusion_lets_a_strong_semantic_match_win():
    # "Does Alex eat meat?" (figures from bench/memory_quality.py with minilm): the answer
    # shares only "Alex" with the query; other memories about Alex match it better by bm25.
    vector = [("alex_vegetarian", 0.739), ("alex_coffee", 0.566), ("noise", 0.295)]
    text = [("alex_coffee", 5.49), ("alex_role", 5.24), ("alex_vegetarian", 4.44)]
    weighted = fuse(vector, text, 10, mode="weighted", floor=0.25, vector_weight=0.8)
    assert [f.key for f in weighted][:3] == ["alex_vegetarian", "alex_coffee", "alex_role"]
    assert weighted[0].similarity == 0.739 and weighted[0].text_rank == 3
    # Reciprocal rank counts the incidental text rank as much as the semantic one.
    rrf = fuse(vector, [key for key, _ in text], 10, mode="rrf")
    assert rrf[0].key == "alex_coffee"


def test_weighted_fusion_with_lexical_vectors_leans_on_bm25():
    vector = [("a", 0.30), ("b", 0.28)]
    text = [("b", 9.0), ("a", 1.0)]
    fused = fuse(vector, text, 10, mode="weighted", floor=0.12, vector_weight=0.3)
    assert [f.key for f in fused] == ["b", "a"]
    assert 0 < fused[1].score < fused[0].score <= 1.0


def test_fusion_keeps_k_and_accepts_bare_keys():
    fused = fuse([(i, 0.9 - i / 100) for i in range(30)], list(range(25, 40)), 20,
                 mode="weighted", floor=0.1)
    assert len(fused) == 20 and len({f.key for f in fused}) == 20
    with pytest.raises(ValueError, match="unknown fusion mode"):
        fuse([], [], 5, mode="sum")
