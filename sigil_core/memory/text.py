"""Text rules every memory backend shares: words, light stemming, content hashes, query terms.

Backend-independent on purpose: two backends that normalise text alike agree on what "the same
fact" is, so memories copied from one to the other consolidate the same way.
"""

from __future__ import annotations

import hashlib
import re

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "for", "from", "has", "have", "he", "her", "his", "i", "if", "in", "into", "is", "it", "its", "of", "on", "or", "our", "she", "so", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "was", "we", "were", "what", "when", "which", "who", "will", "with", "you", "your"]
)
#: At most this many words of a query go to a full-text index.
MAX_QUERY_TERMS = 32
#: A word in more indexed items than this is left out of a full-text query: ranking every item
#: that matches it costs a pass over most of the store, for an inverse document frequency (and
#: so a contribution to the rank) near zero.
COMMON_TERM_DOCS = 4096


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


def normalise(text: str) -> str:
    return " ".join(words(text))


def content_hash(text: str) -> str:
    """The key of "the same words": case, punctuation and spacing do not count."""
    return hashlib.sha1(normalise(text).encode("utf-8")).hexdigest()


def query_terms(text: str) -> list[str]:
    """The distinct words of a query worth a full-text lookup (no stopwords, no single letters)."""
    terms: list[str] = []
    for w in words(text):
        w = w.replace('"', "")
        if w in STOPWORDS or len(w) < 2 or w in terms:
            continue
        terms.append(w)
    return terms[:MAX_QUERY_TERMS]
