"""The memory store: items, categories, history, hybrid search and consolidation.

:class:`MemoryStore` is what the hooks and the ``sigil memory`` commands use. Writing a fact goes
through :meth:`MemoryStore.remember`, which consolidates: the same fact learned again is one item
(times seen, confidence and timestamp updated); a fact that contradicts an active one supersedes
it (the old item keeps its row and history, marked ``superseded``, and leaves the indexes).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import attrs
import numpy as np

from sigil_core import MemoryItem, iso_ms, utcnow
from sigil_core import memory as kit
from sigil_core.memory import EmbedderMismatch, Hit, RememberOutcome
from sigil_core.memory.consolidation import (
    OFFLINE_PROVIDER,
    RELATED_K,
    RELATED_MIN_SIMILARITY,
    item_from_dict,
    reinforce,
    relate,
    validated,
)
from sigil_core.memory.fusion import DEFAULT_MODE, VECTOR_WEIGHT, fuse
from sigil_core.memory.phases import relevant_categories
from sigil_core.memory.text import content_hash, normalise, query_terms

from .db import Database
from .index import VectorIndex

#: ``list`` inside the store classes is their method: annotations there use this name.
List = list

# Shared with every backend through sigil_core.memory; re-exported for this plugin's callers.
__all__ = ["EmbedderMismatch", "Hit", "MemoryStore", "RememberOutcome", "content_hash",
           "item_from_dict", "normalise", "reinforce", "relate"]
#: Page cache (KiB, SQLite's negative cache_size) for ordinary use and for bulk inserts.
CACHE_KB = -65_536
BULK_CACHE_KB = -262_144
#: A word in more indexed items than this is left out of the full-text query (bm25 would rank
#: every one of them, for an inverse document frequency near zero).
COMMON_TERM_DOCS = 4096
#: Codes are re-centred each time the store doubles until the centre has been estimated from
#: this many vectors; past it the mean moves by less than 1% of a standard deviation per
#: dimension, and re-centring (rewriting every code) is no longer worth its cost.
RECENTRE_LIMIT = 8_192
ITEM_COLUMNS = ("rowid, id, content, memory_type, category, confidence, source_session_id, "
                "created_at, updated_at, times_seen, status, superseded_by, provider, model, "
                "subject, attribute")


def default_path(config: Any) -> Path:
    """SIGIL_MEMORY_DB > ``memory.path`` in the config > ``<config home>/memory.db``."""
    env = os.environ.get("SIGIL_MEMORY_DB")
    if env:
        return Path(env).expanduser()
    section = config.section("memory") if config is not None else {}
    if section.get("path"):
        path = Path(str(section["path"])).expanduser()
        return path if path.is_absolute() else Path(config.home) / path
    return Path(config.home) / "memory.db"


def new_id() -> str:
    return "mem_" + secrets.token_hex(6)


def batch_ids(conn: Any, n: int) -> Iterator[str]:
    """``n`` new ids for one bulk insert: a random prefix and a counter (``mem_`` + 12 hex, as
    :func:`new_id`). Consecutive ids land side by side in the id indexes (items, history)
    instead of at n random places; a prefix already in use is drawn again."""
    if n > 0xFFFF:
        return (new_id() for _ in range(n))
    while True:
        prefix = "mem_" + secrets.token_hex(4)
        taken = conn.execute("select 1 from items where id >= ? and id < ? limit 1",
                             (prefix, prefix + "g")).fetchone()
        if not taken:
            return (f"{prefix}{i:04x}" for i in range(n))


_HISTORY_INSERT = ("insert into item_history(item_id, event, content, confidence, session_id, "
                   "related_id, at) values ")
_HISTORY_ROW = "(?, ?, ?, ?, ?, ?, ?)"
_MERGE_UPDATE = ("update items set times_seen = times_seen + ?, confidence = ?, updated_at = ? "
                 "where rowid = ?")
#: Rows per multi-row insert (7 parameters each: SQLite's oldest builds allow 999).
_ROWS_PER_INSERT = 140


class _Deferred:
    """What a group of facts written in one transaction leaves to its end: history rows in
    the order they happened, and each category's first and last time. Each statement on the
    store's thread gives the GIL away and then waits to have it back, behind the event
    loop's thread when runs are busy: written a statement per fact, a group of 20 facts
    took ~4x its CPU time with 100 concurrent runs.

    Merges too: a fact merged into an item (seen again) updates its row once at the end,
    with every merge of the group counted, and the rows merged into are kept by content so
    the same fact again (concurrent runs that learnt it) reads no row either; rows read
    meanwhile carry the pending merges (:meth:`overlaid`), as they would be in the file.
    With 100 concurrent runs that learnt the same fact, a group of 23 made 46 statements
    for it: a read and an update each."""

    __slots__ = ("categories", "history", "merges", "rows")

    def __init__(self) -> None:
        self.history: List[tuple[Any, ...]] = []
        self.categories: dict[str, List[str]] = {}
        #: rowid -> [times seen since the group began, confidence, updated_at]
        self.merges: dict[int, List[Any]] = {}
        #: (content hash, memory type) -> the active row merged into, merges applied
        self.rows: dict[tuple[str, str], tuple[Any, ...]] = {}

    def overlaid(self, row: Any) -> Any:
        """``row`` (ITEM_COLUMNS) as it is with this group's pending merges applied."""
        if row is None:
            return None
        pending = self.merges.get(row[0])
        if pending is None:
            return row
        out = list(row)
        out[5], out[8], out[9] = pending[1], pending[2], row[9] + pending[0]
        return tuple(out)

    def merge(self, key: tuple[str, str], row: tuple[Any, ...], confidence: float,
              now: str) -> None:
        """Count one merge into ``row`` (read with :meth:`overlaid`), written at the end."""
        pending = self.merges.setdefault(row[0], [0, confidence, now])
        pending[0] += 1
        pending[1], pending[2] = confidence, now
        out = list(row)
        out[5], out[8], out[9] = confidence, now, row[9] + 1
        self.rows[key] = tuple(out)

    def apply(self, conn: Any, rowid: int) -> None:
        """Write ``rowid``'s pending merges now (before a statement that changes the row
        otherwise, so the row's updates land in the order they happened)."""
        pending = self.merges.pop(rowid, None)
        if pending is not None:
            conn.execute(_MERGE_UPDATE, (pending[0], pending[1], pending[2], rowid))
        for key in [k for k, r in self.rows.items() if r[0] == rowid]:
            del self.rows[key]

    def flush(self, conn: Any) -> None:
        if self.merges:
            conn.executemany(_MERGE_UPDATE, [(p[0], p[1], p[2], rowid)
                                             for rowid, p in self.merges.items()])
            self.merges.clear()
        self.rows.clear()
        rows = self.history
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start:start + _ROWS_PER_INSERT]
            conn.execute(_HISTORY_INSERT + ", ".join([_HISTORY_ROW] * len(chunk)),
                         [value for row in chunk for value in row])
        touched = list(self.categories.items())
        for start in range(0, len(touched), 300):
            chunk = touched[start:start + 300]
            conn.execute("insert into categories(name, created_at, updated_at) values "
                         + ", ".join(["(?, ?, ?)"] * len(chunk))
                         + " on conflict(name) do update set updated_at = excluded.updated_at",
                         [value for name, (first, last) in chunk
                          for value in (name, first, last)])


class MemoryStore:
    """One memory database bound to one embedder."""

    def __init__(self, path: str | os.PathLike[str], embedder: Any, *, check_embedder: bool = True):
        self.db = Database(path)
        self.path = self.db.path
        self.embedder = embedder
        self.index: VectorIndex | None = None
        self._common: dict[str, bool] = {}
        #: Set while remember_groups writes a group (see _Deferred).
        self._deferred: _Deferred | None = None
        self.db.after_commit.append(self._publish)
        stored = self.db.meta("embedder")
        if stored is None:
            self._bind(embedder)
        elif check_embedder:
            self._check_embedder(stored)
        else:
            dims = int(self.db.meta("dimensions") or embedder.dimensions)
            self.index = VectorIndex(self.db, dims)
        if self.index is not None:
            self.index.ensure_layout()

    # ----------------------------------------------------------------- embedder

    def _bind(self, embedder: Any) -> None:
        dims = int(embedder.dimensions)

        def bind(conn: Any) -> None:
            if conn.execute("select value from meta where key = 'embedder'").fetchone():
                return  # another process bound it first
            VectorIndex.create_tables(conn, dims)
            Database.set_meta(conn, "embedder", embedder.name)
            Database.set_meta(conn, "dimensions", dims)

        self.db.write(bind)
        stored = self.db.meta("embedder")
        if stored != embedder.name:
            self._check_embedder(stored)
        self.index = VectorIndex(self.db, dims)

    def _publish(self, conn: Any) -> None:
        """After each write: the vector side file follows (see :mod:`.vectorfile`)."""
        if self.index is not None and self.db.meta("embedder") is not None:
            self.index.publish(conn)

    def _check_embedder(self, stored: str | None) -> None:
        dims = int(self.db.meta("dimensions") or 0)
        if stored == self.embedder.name and dims == int(self.embedder.dimensions):
            self.index = VectorIndex(self.db, dims)
            return
        count = self.count()
        raise EmbedderMismatch(
            f"memory database {self.path} was indexed with embedder {stored!r} ({dims} dims) "
            f"but the configured embedder is {self.embedder.name!r} "
            f"({self.embedder.dimensions} dims); run `sigil memory reindex` to re-embed its "
            f"{count} memories",
            code="MEMORY_004", recoverable=True,
            context={"stored_embedder": stored, "embedder": self.embedder.name},
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        dims = self.index.dimensions  # type: ignore[union-attr]
        return np.asarray(kit.embed_checked(self.embedder, texts, dims),
                          dtype=np.float32).reshape(len(texts), dims)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- reading

    @staticmethod
    def _item(row: Sequence[Any]) -> MemoryItem:
        return MemoryItem(
            id=row[1], content=row[2], memory_type=row[3], category=row[4],
            confidence=round(float(row[5]), 4), source_session_id=row[6], created_at=row[7],
            updated_at=row[8], times_seen=int(row[9]), provider=row[12], model=row[13],
            subject=row[14], attribute=row[15],
        )

    def count(self, status: str | None = "active") -> int:
        if status is None:
            return self.db.query("select count(*) from items")[0][0]
        return self.db.query("select count(*) from items where status = ?", (status,))[0][0]

    def get(self, item_id: str) -> MemoryItem | None:
        rows = self.db.query(f"select {ITEM_COLUMNS} from items where id = ?", (item_id,))
        return self._item(rows[0]) if rows else None

    def status(self, item_id: str) -> tuple[str, str | None] | None:
        rows = self.db.query("select status, superseded_by from items where id = ?", (item_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def history(self, item_id: str) -> List[dict[str, Any]]:
        return kit.history_entries(self.db.query(
            f"select {', '.join(kit.HISTORY_COLUMNS)} from item_history where item_id = ? "
            "order by id", (item_id,)))

    def list(self, *, memory_type: str | None = None, category: str | None = None,
             include_superseded: bool = False, limit: int | None = None) -> List[MemoryItem]:
        sql, params = kit.list_query(ITEM_COLUMNS, "items", mark="?", tiebreak="rowid",
                                 memory_type=memory_type, category=category,
                                 include_superseded=include_superseded, limit=limit)
        return [self._item(r) for r in self.db.query(sql, params)]

    def _items_by_rowid(self, rowids: Iterable[int]) -> dict[int, MemoryItem]:
        ids = [int(r) for r in rowids]
        if not ids:
            return {}
        rows = self.db.query(
            f"select {ITEM_COLUMNS} from items where rowid in ({','.join(map(str, ids))}) "
            "and status = 'active'")
        return {r[0]: self._item(r) for r in rows}

    # ----------------------------------------------------------------- search

    @staticmethod
    def fts_terms(text: str) -> List[str]:
        return query_terms(text)

    @staticmethod
    def fts_query(text: str | List[str]) -> str | None:
        terms = MemoryStore.fts_terms(text) if isinstance(text, str) else text
        if not terms:
            return None
        return " OR ".join(f'"{t}"' for t in terms)

    def _is_common(self, term: str) -> bool:
        """True when ``term`` is in more than COMMON_TERM_DOCS indexed items.

        bm25 ranks every item matching any query term, so one word found in most items makes
        the full-text half cost a pass over the whole store (130 ms at 100k items) while adding
        almost nothing: its inverse document frequency is near zero. Probing stops after
        COMMON_TERM_DOCS + 1 matches, so it costs at most ~2 ms; answers are kept per store.
        """
        cached = self._common.get(term)
        if cached is None:
            rows = self.db.query("select count(*) from (select 1 from items_fts where items_fts "
                                 "match ? limit ?)", (f'"{term}"', COMMON_TERM_DOCS + 1))
            cached = self._common[term] = rows[0][0] > COMMON_TERM_DOCS
        return cached

    def text_search(self, text: str, k: int) -> List[int]:
        """FTS5 bm25 top-k rowids, best first (see :meth:`text_search_scored`)."""
        return [rowid for rowid, _ in self.text_search_scored(text, k)]

    def text_search_scored(self, text: str, k: int) -> List[tuple[int, float]]:
        """FTS5 bm25 top-k over the task's words as ``(rowid, bm25)``, bm25 > 0 and best first;
        words found in too many items left out (see :meth:`_is_common`); none left: no hits."""
        terms = self.fts_terms(text)
        if terms and self.index is not None and self.index.count() > COMMON_TERM_DOCS:
            terms = [t for t in terms if not self._is_common(t)]
        query = self.fts_query(terms)
        if not query:
            return []
        # bm25 is lower-is-better. Called by name rather than through FTS5's ``rank`` column
        # (whose default is this same bm25()): the column's indirection cost a quarter of the
        # query (0.58 -> 0.44 ms for 10 words over 100 items, measured).
        rows = self.db.query("select rowid, -bm25(items_fts) from items_fts where items_fts "
                             "match ? order by bm25(items_fts) limit ?", (query, k))
        return [(r[0], float(r[1])) for r in rows]

    def vector_search(self, vector: np.ndarray, k: int) -> List[tuple[int, float]]:
        assert self.index is not None
        return self.index.search(vector, k)

    def search(self, text: str, k: int = 20, *, min_similarity: float | None = None,
               vector: np.ndarray | None = None) -> List[Hit]:
        """Hybrid search: vector KNN (cut at the embedder's similarity floor) and FTS5 bm25,
        each top-k, fused by normalised score (:mod:`sigil_core.memory.fusion`)."""
        if min_similarity is None:
            min_similarity = float(getattr(self.embedder, "min_similarity", 0.0))
        if vector is None:
            vector = self.embed([text])[0]
        vec_hits = [(r, s) for r, s in self.vector_search(vector, k) if s >= min_similarity]
        txt_hits = self.text_search_scored(text, k)
        fused = fuse(vec_hits, txt_hits, k, mode=DEFAULT_MODE, floor=min_similarity,
                     vector_weight=float(getattr(self.embedder, "vector_weight", VECTOR_WEIGHT)))
        items = self._items_by_rowid(int(f.key) for f in fused)  # type: ignore[call-overload]
        hits = []
        for f in fused:
            item = items.get(f.key)  # type: ignore[call-overload]
            if item is None:
                continue
            item.score = round(f.score, 6)
            hits.append(Hit(item, f.score, f.vector_rank, f.text_rank, f.similarity))
        return hits

    # ----------------------------------------------------------------- writing

    def remember(self, item: MemoryItem, *, session_id: str | None = None) -> RememberOutcome:
        """Store one fact with consolidation (see the module docstring)."""
        return self.remember_many([item], session_id=session_id)[0]

    def remember_many(self, items: Sequence[MemoryItem], *, session_id: str | None = None,
                      vectors: np.ndarray | None = None) -> List[RememberOutcome]:
        """Store each fact (consolidated with what is there). ``vectors``: the items'
        embeddings when the caller computed them already (one row per item)."""
        items = [self._validated(i) for i in items]
        if not items:
            return []
        if vectors is None:
            known = self.stored_vectors(items)
            missing = kit.texts_to_embed(items, known)
            vectors = kit.fill_vectors(items, known, self.embed(missing) if missing else None,
                                       self.index.dimensions)  # type: ignore[union-attr]
        return self.remember_groups([(items, vectors, session_id)])[0]

    def stored_vectors(self, items: Sequence[MemoryItem]) -> dict[tuple[str, str], np.ndarray]:
        """The stored embedding of each item whose exact text is stored already (active, same
        type), by (content, memory_type). A fact learnt again is merged with the stored one
        and needs no new embedding: the caller runs the model only for the rest (for
        all-MiniLM, ~2.5-3.5 ms of CPU a text saved; every offline run of the same task
        records the same event)."""
        if self.index is None or not items:
            return {}
        hashes = sorted({content_hash(i.content) for i in items})
        rows = self.db.query(
            "select i.content, i.memory_type, e.embedding from items i join item_embeddings e "
            f"on e.rowid = i.rowid where i.status = 'active' and i.content_hash in "
            f"({','.join('?' * len(hashes))})", tuple(hashes))
        return {(r[0], r[1]): np.frombuffer(r[2], dtype=np.float16).astype(np.float32)
                for r in rows}

    def remember_groups(self, groups: Sequence[tuple[Sequence[MemoryItem], Any, str | None]]
                        ) -> List[List[RememberOutcome]]:
        """Several :meth:`remember_many` calls' ``(items, vectors, session_id)`` stored in one
        transaction, each call's outcomes in its own list: the group commit the async face
        (backend.SqliteStore) makes of concurrent runs' extractions. The facts meet each other
        as they would one call after another: a fact is consolidated with the ones stored
        before it in the group. The items must be validated and the vectors computed."""
        items = [i for g in groups for i in g[0]]
        sessions = [g[2] for g in groups for _ in g[0]]
        if not items:
            return [[] for _ in groups]
        vectors = np.concatenate([np.asarray(g[1], dtype=np.float32).reshape(len(g[0]), -1)
                                  for g in groups if len(g[0])])
        # Related candidates are looked up before the write lock (search is read-only); the
        # decision is re-checked inside the transaction against what is there by then.
        # Once per distinct vector: runs that learnt the same fact bring the same one, and
        # each search reads the index's state from the file (three statements, each giving
        # the GIL away and waiting to have it back behind the event loop's thread).
        # In one read transaction: the index's bookkeeping is read once (Database.reading),
        # not four to six statements again for its sync.
        found: dict[bytes, List[tuple[int, float]]] = {}
        with self.db.reading():
            related = [found[key] if (key := vectors[n].tobytes()) in found
                       else found.setdefault(key, self._related(vectors[n]))
                       for n in range(len(items))]
        unit = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)

        def write(conn: Any) -> List[RememberOutcome]:
            out: List[RememberOutcome] = []
            rowids: List[int] = []  # of out's items
            # History rows and category times are written together at the end: a statement
            # per fact each cost a GIL hand-off on this thread (see _Deferred).
            self._deferred = _Deferred()
            for n, item in enumerate(items):
                # Facts stored earlier in this batch are candidates too (one extraction may
                # state a fact twice in other words, or correct itself), ranked with the
                # stored ones by similarity, as a later batch would meet them.
                # (One product for all of them: a product per pair made a group of 100
                # facts cost ~5,000 numpy calls.)
                here = zip(rowids, (unit[: len(out)] @ unit[n]).tolist()) if out else ()
                cands = sorted([*related[n], *((r, s) for r, s in here
                                               if r > 0 and s >= RELATED_MIN_SIMILARITY)],
                               key=lambda c: -c[1])
                outcome, rowid = self._remember_in(conn, item, vectors[n],
                                                   list(dict.fromkeys(r for r, _ in cands)),
                                                   sessions[n])
                out.append(outcome)
                rowids.append(rowid)
            self._deferred.flush(conn)
            Database.bump_generation(conn)
            return out

        try:
            out = self.db.write(write)
        finally:
            self._deferred = None
        self._maybe_recentre()
        split, start = [], 0
        for g in groups:
            split.append(out[start:start + len(g[0])])
            start += len(g[0])
        return split

    def _maybe_recentre(self) -> None:
        """Re-centre the binary codes each time the store doubles, until the centre has been
        estimated from RECENTRE_LIMIT vectors: early items then define the centre only until
        there are enough to estimate it well."""
        assert self.index is not None
        n = self.index.count()
        done = int(self.db.meta("centre_n", "0") or 0)
        if n < 256 or done >= RECENTRE_LIMIT or n < 2 * done:
            return
        index = self.index

        def recentre(conn: Any) -> None:
            index.recentre(conn)
            Database.bump_generation(conn)

        self.db.write(recentre)

    @staticmethod
    def _validated(item: MemoryItem) -> MemoryItem:
        return validated(item)

    def _related(self, vector: np.ndarray) -> List[tuple[int, float]]:
        """Nearest stored vectors: the candidates consolidation compares a new fact with.

        Vector-only: a restatement shares most of its words, so it is among the nearest; the
        full-text side would add cost (bm25 over every item sharing a common word) but no
        candidates that the lexical rules of :func:`relate` could accept."""
        return [(rowid, sim) for rowid, sim in self.vector_search(vector, RELATED_K)
                if sim >= RELATED_MIN_SIMILARITY]

    def _rowid(self, item_id: str | None) -> int:
        rows = self.db.query("select rowid from items where id = ?", (item_id,))
        return rows[0][0] if rows else -1

    def _remember_in(self, conn: Any, item: MemoryItem, vector: np.ndarray, related: List[int],
                     session_id: str | None) -> tuple[RememberOutcome, int]:
        """The fact consolidated with what is stored, and the rowid of the item it is now."""
        now = iso_ms(utcnow())
        session = item.source_session_id or session_id
        h = content_hash(item.content)
        deferred = self._deferred
        # Rows read here carry the group's pending merges (see _Deferred).
        seen = (lambda row: row) if deferred is None else deferred.overlaid
        key = (h, item.memory_type)
        # The same fact merged into an item earlier in the group: that row, as it is now.
        row = deferred.rows.get(key) if deferred is not None else None
        by_content = row is not None
        if row is None:
            # "+memory_type": without statistics SQLite would otherwise walk the items_type
            # index (every item of that type, 2 ms per 30k) instead of the content_hash one.
            row = seen(conn.execute(f"select {ITEM_COLUMNS} from items where content_hash = ? "
                                    "and status = 'active' and +memory_type = ?",
                                    key).fetchone())
            by_content = row is not None
        if row is None and item.subject and item.attribute:
            # The same subject and attribute: the newer fact replaces the older one (or is it).
            cand = seen(conn.execute(f"select {ITEM_COLUMNS} from items where subject = ? and "
                                     "attribute = ? and status = 'active' order by rowid desc",
                                     (item.subject, item.attribute)).fetchone())
            if cand is not None:
                if relate(cand[2], item.content, item.memory_type) == "same":
                    row = cand
                else:
                    return self._supersede(conn, self._item(cand), cand[0], item, vector,
                                           session, now)
        if row is None:
            for rowid in related:
                cand = seen(conn.execute(f"select {ITEM_COLUMNS} from items where rowid = ? "
                                         "and status = 'active'", (rowid,)).fetchone())
                if cand is None:
                    continue
                relation = relate(cand[2], item.content, item.memory_type)
                if relation == "same":
                    row = cand
                    break
                if relation == "contradicts":
                    return self._supersede(conn, self._item(cand), cand[0], item, vector,
                                           session, now)
        if row is not None:
            old = self._item(row)
            confidence = reinforce(old.confidence, item.confidence)
            if deferred is None:
                conn.execute(_MERGE_UPDATE, (1, confidence, now, row[0]))
            else:
                # Kept by content only when found by content: another way to it (subject,
                # similarity) is asked again, as one call after another would.
                deferred.merge(key, row, confidence, now)
                if not by_content:
                    deferred.rows.pop(key, None)
            if old.provider == OFFLINE_PROVIDER and item.provider not in (None, OFFLINE_PROVIDER):
                # A real model found it too: no longer only the offline model's placeholder.
                if deferred is not None:
                    deferred.apply(conn, row[0])
                conn.execute("update items set provider = ?, model = ? where rowid = ?",
                             (item.provider, item.model, row[0]))
                old = attrs.evolve(old, provider=item.provider, model=item.model)
            self._history(conn, old.id, "seen", item.content, item.confidence, session, None,
                          now)
            merged = attrs.evolve(old, confidence=round(confidence, 4), updated_at=now,
                                  times_seen=old.times_seen + 1)
            self._touch_category(conn, old.category, now)
            return RememberOutcome(merged, "merged"), row[0]
        stored, rowid = self._insert(conn, item, vector, session, now)
        return RememberOutcome(stored, "new"), rowid

    def _insert(self, conn: Any, item: MemoryItem, vector: np.ndarray, session: str | None,
                now: str, event: str = "created", related_id: str | None = None
                ) -> tuple[MemoryItem, int]:
        """Insert and index one item: the item stored and its rowid."""
        assert self.index is not None
        item_id = item.id if item.id and not self.get(item.id) else new_id()
        created = item.created_at or now
        cur = conn.execute(
            "insert into items(id, content, content_hash, memory_type, category, confidence, "
            "source_session_id, created_at, updated_at, times_seen, provider, model, subject, "
            "attribute) values (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (item_id, item.content, content_hash(item.content), item.memory_type, item.category,
             item.confidence, session, created, item.updated_at or now, max(1, item.times_seen),
             item.provider, item.model, item.subject, item.attribute))
        rowid = cur.lastrowid
        conn.execute("insert into items_fts(rowid, content, category) values (?, ?, ?)",
                     (rowid, item.content, item.category or ""))
        self.index.add(conn, [rowid], vector[None, :])
        self._history(conn, item_id, event, item.content, item.confidence, session, related_id,
                      now)
        self._touch_category(conn, item.category, now)
        return MemoryItem(content=item.content, memory_type=item.memory_type,
                          confidence=round(item.confidence, 4), category=item.category,
                          id=item_id, source_session_id=session, created_at=created,
                          updated_at=item.updated_at or now, times_seen=max(1, item.times_seen),
                          provider=item.provider, model=item.model, subject=item.subject,
                          attribute=item.attribute), rowid

    def _supersede(self, conn: Any, old: MemoryItem, old_rowid: int, item: MemoryItem,
                   vector: np.ndarray, session: str | None, now: str
                   ) -> tuple[RememberOutcome, int]:
        if item.category is None and old.category:
            item = attrs.evolve(item, category=old.category)
        stored, rowid = self._insert(conn, item, vector, session, now, event="supersedes",
                                     related_id=old.id)
        if self._deferred is not None:
            self._deferred.apply(conn, old_rowid)  # its merges first, then its end
        self._unindex(conn, old_rowid)
        conn.execute("update items set status = 'superseded', superseded_by = ?, updated_at = ? "
                     "where rowid = ?", (stored.id, now, old_rowid))
        self._history(conn, old.id, "superseded", item.content, None, session, stored.id, now)
        return RememberOutcome(stored, "superseded", previous=old), rowid

    def _unindex(self, conn: Any, rowid: int) -> None:
        assert self.index is not None
        row = conn.execute("select content, category from items where rowid = ?",
                           (rowid,)).fetchone()
        if row is not None:
            conn.execute("insert into items_fts(items_fts, rowid, content, category) "
                         "values ('delete', ?, ?, ?)", (rowid, row[0], row[1] or ""))
        self.index.remove(conn, rowid)

    def _history(self, conn: Any, *row: Any) -> None:
        """One history row: (item_id, event, content, confidence, session_id, related_id,
        at); left for the end of the transaction in a group (see remember_groups)."""
        if self._deferred is not None:
            self._deferred.history.append(row)
        else:
            conn.execute(_HISTORY_INSERT + _HISTORY_ROW, row)

    def _touch_category(self, conn: Any, category: str | None, now: str) -> None:
        if category and self._deferred is not None:
            self._deferred.categories.setdefault(category, [now, now])[1] = now
        elif category:
            conn.execute("insert into categories(name, created_at, updated_at) values (?, ?, ?) "
                         "on conflict(name) do update set updated_at = excluded.updated_at",
                         (category, now, now))

    def forget(self, item_id: str) -> bool:
        """Delete an item, its history and its index entries. False when it does not exist."""

        def write(conn: Any) -> bool:
            row = conn.execute("select rowid, status from items where id = ?",
                               (item_id,)).fetchone()
            if row is None:
                return False
            if row[1] == "active":
                self._unindex(conn, row[0])
            conn.execute("delete from items where rowid = ?", (row[0],))
            conn.execute("delete from item_history where item_id = ?", (item_id,))
            Database.bump_generation(conn)
            return True

        return self.db.write(write)

    def forget_provider(self, provider: str) -> int:
        """Delete every memory (active or superseded) made by ``provider``; how many."""
        ids = [r[0] for r in self.db.query("select id from items where provider = ?",
                                           (provider,))]
        for item_id in ids:
            self.forget(item_id)
        return len(ids)

    def add_raw(self, items: Sequence[MemoryItem], vectors: np.ndarray | None = None,
                *, session_id: str | None = None) -> List[MemoryItem]:
        """Insert items as new, without consolidation (bulk loading, benchmarks, imports of
        superseded history). One transaction."""
        items = [self._validated(i) for i in items]
        if vectors is None:
            vectors = self.embed([i.content for i in items])

        def write(conn: Any) -> List[MemoryItem]:
            # Bulk path: rowids assigned up front (we hold the write lock), so every table is
            # filled with one executemany instead of a statement per row.
            now = iso_ms(utcnow())
            first = conn.execute("select coalesce(max(rowid), 0) from items").fetchone()[0] + 1
            rowids = list(range(first, first + len(items)))
            fresh = batch_ids(conn, len(items))
            out = [MemoryItem(content=i.content, memory_type=i.memory_type,
                              confidence=i.confidence, category=i.category,
                              id=i.id if i.id and not self.get(i.id) else next(fresh),
                              source_session_id=i.source_session_id or session_id,
                              created_at=i.created_at or now, updated_at=i.updated_at or now,
                              times_seen=max(1, i.times_seen), provider=i.provider, model=i.model,
                              subject=i.subject, attribute=i.attribute) for i in items]
            conn.executemany(
                "insert into items(rowid, id, content, content_hash, memory_type, category, "
                "confidence, source_session_id, created_at, updated_at, times_seen, provider, "
                "model, subject, attribute) values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(r, o.id, o.content, content_hash(o.content), o.memory_type, o.category,
                  o.confidence, o.source_session_id, o.created_at, o.updated_at, o.times_seen,
                  o.provider, o.model, o.subject, o.attribute)
                 for r, o in zip(rowids, out)])
            conn.executemany("insert into items_fts(rowid, content, category) values (?, ?, ?)",
                             [(r, o.content, o.category or "") for r, o in zip(rowids, out)])
            conn.executemany(
                "insert into item_history(item_id, event, content, confidence, session_id, at) "
                "values (?, 'created', ?, ?, ?, ?)",
                [(o.id, o.content, o.confidence, o.source_session_id, now) for o in out])
            for category in {o.category for o in out if o.category}:
                self._touch_category(conn, category, now)
            assert self.index is not None
            self.index.add(conn, rowids, np.asarray(vectors))
            Database.bump_generation(conn)
            return out

        # Large batches insert into indexes keyed by hashes (content_hash, FTS terms) all over
        # the file: a bigger page cache for the duration keeps those pages from being re-read.
        big = len(items) >= 1000
        if big:
            self.db.conn.execute(f"pragma cache_size = {BULK_CACHE_KB}")
        try:
            out = self.db.write(write)
        finally:
            if big:
                self.db.conn.execute(f"pragma cache_size = {CACHE_KB}")
        self._maybe_recentre()
        return out

    # ----------------------------------------------------------------- categories

    def categories(self) -> List[tuple[str, int]]:
        rows = self.db.query(
            "select c.name, count(i.rowid) from categories c left join items i on "
            "i.category = c.name and i.status = 'active' group by c.name order by c.name")
        return [(r[0], r[1]) for r in rows]

    def relevant_categories(self, task: str, hits: Sequence[Hit]) -> List[str]:
        """Categories of the retrieved items, then those whose name appears in the task."""
        return relevant_categories(task, hits, self.categories())

    # ----------------------------------------------------------------- maintenance

    def stats(self) -> dict[str, Any]:
        by_type = dict(self.db.query("select memory_type, count(*) from items where status = "
                                     "'active' group by memory_type order by memory_type"))
        try:
            size = self.path.stat().st_size
        except OSError:
            size = 0
        return {
            "path": str(self.path),
            "active": self.count(),
            "superseded": self.count("superseded"),
            "by_type": by_type,
            "categories": dict(self.categories()),
            "embedder": self.db.meta("embedder"),
            "dimensions": int(self.db.meta("dimensions") or 0),
            "vectors": self.index.count() if self.index else 0,
            "size_bytes": size,
            "driver": self.db.driver_name,
        }

    def export(self) -> Iterator[dict[str, Any]]:
        """Every item (superseded ones too) with its history, oldest first."""
        rows = self.db.query(f"select {ITEM_COLUMNS} from items order by rowid")
        for r in rows:
            d = {k: v for k, v in attrs.asdict(self._item(r)).items() if v is not None}
            d.pop("score", None)
            d["status"] = r[10]
            if r[11]:
                d["superseded_by"] = r[11]
            d["history"] = self.history(r[1])
            yield d

    def reindex(self, embedder: Any, *, batch: int = 256) -> int:
        """Re-embed every active item with ``embedder`` and rebuild the vector index."""
        rows = self.db.query("select rowid, content from items where status = 'active' "
                             "order by rowid")
        dims = int(embedder.dimensions)
        self.embedder = embedder
        self.index = VectorIndex(self.db, dims)
        vectors: List[np.ndarray] = []
        for start in range(0, len(rows), batch):
            vectors.append(self.embed([r[1] for r in rows[start:start + batch]]))
        allv = np.concatenate(vectors) if vectors else np.zeros((0, dims), np.float32)

        def write(conn: Any) -> None:
            VectorIndex.drop_tables(conn)
            conn.execute("delete from meta where key in ('centre', 'centre_n', 'vector_count')")
            VectorIndex.create_tables(conn, dims)  # a new codes_epoch: cached copies reload
            assert self.index is not None
            self.index.reset_centre()
            if rows:
                self.index.add(conn, [r[0] for r in rows], allv)
                self.index.recentre(conn)
            Database.set_meta(conn, "embedder", embedder.name)
            Database.set_meta(conn, "dimensions", dims)
            Database.bump_generation(conn)

        self.db.write(write)
        return len(rows)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=False)
