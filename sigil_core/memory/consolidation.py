"""Consolidation rules every memory backend applies when it stores a fact.

The same fact learned again is one item (times seen, confidence and timestamp updated); a fact
that contradicts an active one supersedes it (the old item keeps its row and history, marked
``superseded``, and leaves the indexes). A backend finds the candidates (its nearest vectors and
the item with the same :func:`~sigil_core.memory.text.content_hash`); these functions decide.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from ..constants import MEMORY_TYPES
from ..model import MemoryItem
from .text import content_terms, words

NEGATIONS = frozenset({"not", "no", "never", "none", "cannot", "nor", "without"})
_NUMBER = re.compile(r"^\d+(?:[.,]\d+)?[a-z%]*$")
#: Nearest stored vectors a new fact is compared with, and the cosine below which a stored
#: vector is too far to be a restatement or a contradiction.
RELATED_K = 8
RELATED_MIN_SIMILARITY = 0.2
#: The most characters one memory may hold (about 1,000 tokens). A memory is a fact, not a
#: document: every backend refuses longer content on add, import and remember (ValueError).
MAX_ITEM_CHARS = 4_000


def check_size(content: str, where: str = "") -> None:
    """ValueError naming the cap when ``content`` is longer than MAX_ITEM_CHARS."""
    if len(content) > MAX_ITEM_CHARS:
        raise ValueError(f"{where}memory content is {len(content):,} characters; a memory holds "
                         f"at most {MAX_ITEM_CHARS:,} (one fact, not a document): shorten it or "
                         "split it into several facts")


def reinforce(old: float, new: float) -> float:
    """Confidence after seeing a fact again: moves towards 1 by half the new evidence."""
    return min(1.0, old + (1.0 - old) * new * 0.5)


def relate(old: str, new: str, memory_type: str) -> str | None:
    """"same", "contradicts" or None for two facts of one type (lexical rules, no model).

    Same: equal content words regardless of order or inflection, or nearly so (Jaccard >= 0.85,
    or one a subset of the other) with no number or negation differing. Contradicts: the same
    statement (high overlap) with a negation on one side only, a different number, or, for
    preferences, one or two words swapped ("prefers email" -> "prefers phone").
    """
    a_words, b_words = words(old), words(new)
    a = set(content_terms(old))
    b = set(content_terms(new))
    if not a or not b:
        return None
    neg_a = bool(NEGATIONS & set(a_words)) or any(w.endswith("n't") for w in a_words)
    neg_b = bool(NEGATIONS & set(b_words)) or any(w.endswith("n't") for w in b_words)
    a_core, b_core = a - NEGATIONS, b - NEGATIONS
    shared = a_core & b_core
    union = a_core | b_core
    jaccard = len(shared) / len(union) if union else 1.0
    only_a, only_b = a_core - b_core, b_core - a_core
    nums_a = {t for t in only_a if _NUMBER.match(t)}
    nums_b = {t for t in only_b if _NUMBER.match(t)}
    if a_core == b_core and neg_a == neg_b:
        return "same"
    if neg_a != neg_b and (a_core == b_core or jaccard >= 0.6):
        return "contradicts"
    if nums_a and nums_b and len(shared) >= 2 and not (only_a - nums_a) and not (only_b - nums_b):
        return "contradicts"
    if neg_a == neg_b and not nums_a and not nums_b:
        if jaccard >= 0.85:
            return "same"
        # One says the same with a qualifier more ("the client Acme prefers email").
        if (a_core <= b_core or b_core <= a_core) and len(shared) >= 3 and jaccard >= 0.6:
            return "same"
    if (memory_type == "preference" and len(shared) >= 2 and 1 <= len(only_a) <= 2
            and 1 <= len(only_b) <= 2 and jaccard >= 0.4):
        return "contradicts"
    return None


def validated(item: MemoryItem) -> MemoryItem:
    """The item as a backend stores it: spacing collapsed, category lower-case; ValueError for
    empty content, an unknown type or a confidence outside [0, 1]."""
    content = " ".join(str(item.content or "").split())
    if not content:
        raise ValueError("memory content is empty")
    check_size(content)
    if item.memory_type not in MEMORY_TYPES:
        raise ValueError(f"memory type {item.memory_type!r} is not one of "
                         f"{', '.join(MEMORY_TYPES)}")
    try:
        confidence = float(item.confidence)
    except (TypeError, ValueError):
        raise ValueError(f"confidence {item.confidence!r} is not a number") from None
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence {confidence} is not between 0 and 1")
    category = (item.category or "").strip().lower() or None
    subject = key_text(item.subject)
    attribute = key_text(item.attribute)
    if (content == item.content and confidence == item.confidence and category == item.category
            and subject == item.subject and attribute == item.attribute):
        return item  # the common case, and attrs.evolve is costly on bulk paths
    return attrs.evolve(item, content=content, confidence=confidence, category=category,
                        subject=subject, attribute=attribute)


def key_text(value: str | None) -> str | None:
    """A subject or attribute as stored and compared: lower case, spacing collapsed."""
    text = " ".join(str(value or "").lower().split())
    return text or None


#: The provider name of the offline model's memories.
OFFLINE_PROVIDER = "offline"
#: The provider name of memories a person added (`sigil memory add`).
USER_PROVIDER = "user"


def item_from_dict(data: dict[str, Any], where: str) -> MemoryItem:
    """A MemoryItem from an export line; ValueError names the line and the problem."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object")  # noqa: TRY004 - callers catch ValueError
    content = data.get("content")
    if not isinstance(content, str) or not content.strip():
        raise ValueError(f"{where}: 'content' must be a non-empty string")
    check_size(" ".join(content.split()), f"{where}: ")
    memory_type = data.get("memory_type", data.get("type", "fact"))
    if memory_type not in MEMORY_TYPES:
        raise ValueError(f"{where}: memory_type {memory_type!r} is not one of "
                         f"{', '.join(MEMORY_TYPES)}")
    confidence = data.get("confidence", 0.8)
    if not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
        raise ValueError(f"{where}: confidence must be a number between 0 and 1")
    times_seen = data.get("times_seen", 1)
    if not isinstance(times_seen, int) or times_seen < 1:
        raise ValueError(f"{where}: times_seen must be a whole number >= 1")
    extra: dict[str, Any] = {}
    for key in ("provider", "model", "subject", "attribute"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}: {key} must be a string")
        extra[key] = value
    return MemoryItem(content=content, memory_type=memory_type, confidence=float(confidence),
                      category=data.get("category"), id=data.get("id"),
                      source_session_id=data.get("source_session_id"),
                      created_at=data.get("created_at"), updated_at=data.get("updated_at"),
                      times_seen=times_seen, **extra)
