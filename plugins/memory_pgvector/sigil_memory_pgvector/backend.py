"""The memory store on PostgreSQL + pgvector (``memory.backend: pgvector``).

* psycopg 3 with an async connection pool (psycopg_pool), pgvector's adapter for the vectors;
* one ``items`` table per schema: an HNSW index (cosine) on the vector column, a GIN index on a
  generated ``tsvector`` column, both partial or null for superseded items, which keep their
  row and history but leave the indexes;
* hybrid search: vector top-k and full-text top-k in one round trip, fused as every backend
  does (:func:`sigil_core.memory.fusion.fuse`: normalised scores weighted by the embedder);
* consolidation by :mod:`sigil_core.memory.consolidation`, made safe for many writers on many
  hosts by the database, not by application locks: a unique index allows one active item per
  (content hash, type); an insert that meets it does nothing and the fact is merged into the
  row that won (``select ... for update``); a superseded row is changed only while still
  active. Deadlocks and serialisation failures are retried.

Connection failures are MEMORY_003 naming the host, port, database and schema, never the
password; the run goes on without memory.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import numpy as np

from sigil_core import MemoryBackendError, MemoryItem, iso_ms, utcnow
from sigil_core.memory import (
    HISTORY_COLUMNS,
    EmbedderMismatch,
    Hit,
    Record,
    RememberOutcome,
    embed_checked,
    fill_vectors,
    history_entries,
    in_embedding_thread,
    list_query,
    texts_to_embed,
)
from sigil_core.memory.consolidation import (
    OFFLINE_PROVIDER,
    RELATED_K,
    RELATED_MIN_SIMILARITY,
    reinforce,
    relate,
    validated,
)
from sigil_core.memory.fusion import DEFAULT_MODE, VECTOR_WEIGHT, fuse
from sigil_core.memory.phases import relevant_categories
from sigil_core.memory.text import COMMON_TERM_DOCS, content_hash, query_terms

from .dsn import describe, resolve_dsn, scrub
from .migrations import lock_key, migrate

__all__ = ["PgStore", "describe", "resolve_dsn"]

#: ``list`` inside PgStore is its method: annotations there use this name.
List = list
ITEM_COLUMNS = ("pk, id, content, memory_type, category, confidence, source_session_id, "
                "created_at, updated_at, times_seen, status, superseded_by, provider, model, "
                "subject, attribute")
#: HNSW candidates examined per query (pgvector's default is 40): recall@20 >= 0.95 needs more,
#: the more the larger the table. Measured with bench/memory_bench.py --backend pgvector (384
#: dims, m=16, ef_construction=64): 100 gives 0.97 at 100k items; at 1M, 100 gives 0.75, 400
#: 0.92 and 800 0.97 (hybrid p50 50 ms).
EF_SEARCH = 100
EF_SEARCH_MAX = 1000  # pgvector's limit


def ef_search_for(rows: int) -> int:
    """The ef_search for a table of about ``rows`` items: 100 up to 125k items, then growing
    with the table (800 at 1M), at most pgvector's 1,000."""
    return max(EF_SEARCH, min(EF_SEARCH_MAX, int(rows) // 1250))
POOL_MAX = 4
CONNECT_TIMEOUT_S = 10
RETRIES = 8
_TSQUERY_WORD = re.compile(r"[^a-z0-9]")


def new_id() -> str:
    """An item id, the same shape as every backend's (``mem_`` + 12 hex)."""
    return "mem_" + secrets.token_hex(6)


class PgStore:
    """One schema of one PostgreSQL database, bound to one embedder."""

    def __init__(self, pool: Any, schema: str, embedder: Any, dims: int, where: str,
                 password: str | None) -> None:
        self.pool = pool
        self.schema = schema
        self.embedder = embedder
        self.dims = dims
        self.location = f"{where} schema {schema}"
        self._password = password
        #: hnsw.ef_search on this store's connections (see :func:`ef_search_for`).
        self.ef_search = EF_SEARCH

    # ----------------------------------------------------------------- opening

    @classmethod
    async def connect(cls, dsn: str, schema: str, embedder: Any, *,
                      check_embedder: bool = True, ef_search: int | None = None) -> PgStore:
        """A pool on ``schema`` (created or migrated as needed). ``ef_search``: HNSW candidates
        per query; by default from the table's size (:func:`ef_search_for`)."""
        import psycopg
        from psycopg_pool import AsyncConnectionPool

        where, password = describe(dsn)
        place = f"{where} schema {schema}"
        try:
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True,
                                                         connect_timeout=CONNECT_TIMEOUT_S)
        except (psycopg.Error, OSError) as exc:
            raise MemoryBackendError(
                f"cannot connect to the memory database at {where}: {scrub(str(exc), password)}",
                code="MEMORY_003", recoverable=True, context={"host": where}) from None
        try:
            stored, dims = await cls._prepare(conn, schema, embedder)
            if ef_search is None:
                # The planner's estimate (pg_class.reltuples, kept by autovacuum/analyze):
                # no count(*) over the table at every open.
                cur = await conn.execute("select greatest(reltuples, 0)::bigint from pg_class "
                                         "where oid = %s::regclass", (f"{schema}.items",))
                row = await cur.fetchone()
                ef_search = ef_search_for(int(row[0]) if row else 0)
        except psycopg.Error as exc:
            raise MemoryBackendError(
                f"cannot prepare the memory schema at {place}: {scrub(str(exc), password)}",
                code="MEMORY_003", recoverable=True, context={"host": where}) from None
        finally:
            await conn.close()
        if check_embedder and (stored != embedder.name or dims != int(embedder.dimensions)):
            raise EmbedderMismatch(
                f"memory database {place} was indexed with embedder {stored!r} ({dims} dims) "
                f"but the configured embedder is {embedder.name!r} ({embedder.dimensions} "
                "dims); run `sigil memory reindex` to re-embed its memories",
                code="MEMORY_004", recoverable=True,
                context={"stored_embedder": stored, "embedder": embedder.name})

        async def configure(c: Any) -> None:
            from pgvector.psycopg import register_vector_async

            await register_vector_async(c)
            await c.execute(f"set hnsw.ef_search = {int(ef_search)}")

        pool = AsyncConnectionPool(dsn, min_size=1, max_size=POOL_MAX, open=False,
                                   kwargs={"autocommit": True,
                                           "connect_timeout": CONNECT_TIMEOUT_S},
                                   configure=configure)
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - PoolTimeout hides the cause; say where
            await pool.close()
            raise MemoryBackendError(
                f"cannot connect to the memory database at {where}: {scrub(str(exc), password)}",
                code="MEMORY_003", recoverable=True, context={"host": where}) from None
        store = cls(pool, schema, embedder, dims, where, password)
        store.ef_search = int(ef_search)
        if not check_embedder and stored != embedder.name:
            store.embedder = embedder  # the caller reindexes (or only reads)
        return store

    @staticmethod
    async def _prepare(conn: Any, schema: str, embedder: Any) -> tuple[str, int]:
        """Migrations, then the embedder binding (the vector column and its HNSW index are
        created for the first embedder's dimensions). Returns the stored embedder and dims."""
        await migrate(conn, schema)
        s = schema
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(f"select key, value from {s}.meta where key in "
                              "('embedder', 'dimensions')")
            meta = dict(await cur.fetchall())
            if "embedder" not in meta:
                await cur.execute("select pg_advisory_xact_lock(%s)", (lock_key(schema),))
                await cur.execute(f"select key, value from {s}.meta where key in "
                                  "('embedder', 'dimensions')")
                meta = dict(await cur.fetchall())
            if "embedder" not in meta:
                dims = int(embedder.dimensions)
                await cur.execute(f"alter table {s}.items add column if not exists "
                                  f"embedding vector({dims})")
                await cur.execute(f"create index if not exists items_embedding on {s}.items "
                                  "using hnsw (embedding vector_cosine_ops)")
                await cur.execute(f"insert into {s}.meta(key, value) values ('embedder', %s), "
                                  "('dimensions', %s)", (embedder.name, str(dims)))
                meta = {"embedder": embedder.name, "dimensions": str(dims)}
        return meta["embedder"], int(meta["dimensions"])

    async def close(self) -> None:
        await self.pool.close()

    # ----------------------------------------------------------------- helpers

    def _failed(self, exc: BaseException, doing: str) -> MemoryBackendError:
        import psycopg

        lost = isinstance(exc, psycopg.OperationalError)
        return MemoryBackendError(
            f"memory database at {self.location}: {doing} failed: "
            f"{scrub(str(exc), self._password)}",
            code="MEMORY_003" if lost else ("MEMORY_002" if doing == "storing" else "MEMORY_001"),
            recoverable=True, context={"host": self.location})

    async def _query(self, sql: str, params: Any = None, doing: str = "reading") -> List[Any]:
        import psycopg

        try:
            async with self.pool.connection() as conn, conn.cursor() as cur:
                await cur.execute(sql, params)
                return await cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise self._failed(exc, doing) from None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(embed_checked(self.embedder, texts, self.dims),
                          dtype=np.float32).reshape(len(texts), self.dims)

    @staticmethod
    def _item(row: Sequence[Any]) -> MemoryItem:
        return MemoryItem(id=row[1], content=row[2], memory_type=row[3], category=row[4],
                          confidence=round(float(row[5]), 4), source_session_id=row[6],
                          created_at=row[7], updated_at=row[8], times_seen=int(row[9]),
                          provider=row[12], model=row[13], subject=row[14], attribute=row[15])

    # ----------------------------------------------------------------- reading

    async def count(self, status: str | None = "active") -> int:
        s = self.schema
        if status is None:
            return (await self._query(f"select count(*) from {s}.items"))[0][0]
        return (await self._query(f"select count(*) from {s}.items where status = %s",
                                  (status,)))[0][0]

    async def get(self, item_id: str) -> MemoryItem | None:
        rows = await self._query(f"select {ITEM_COLUMNS} from {self.schema}.items where id = %s",
                                 (item_id,))
        return self._item(rows[0]) if rows else None

    async def status(self, item_id: str) -> tuple[str, str | None] | None:
        rows = await self._query(f"select status, superseded_by from {self.schema}.items "
                                 "where id = %s", (item_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    async def history(self, item_id: str) -> List[dict[str, Any]]:
        return history_entries(await self._query(
            f"select {', '.join(HISTORY_COLUMNS)} from {self.schema}.item_history where "
            "item_id = %s order by id", (item_id,)))

    async def list(self, *, memory_type: str | None = None, category: str | None = None,
                   include_superseded: bool = False, limit: int | None = None) -> List[MemoryItem]:
        sql, params = list_query(ITEM_COLUMNS, f"{self.schema}.items", mark="%s", tiebreak="pk",
                                 memory_type=memory_type, category=category,
                                 include_superseded=include_superseded, limit=limit)
        return [self._item(r) for r in await self._query(sql, params)]

    async def categories(self) -> List[tuple[str, int]]:
        s = self.schema
        rows = await self._query(
            f"select c.name, count(i.pk) from {s}.categories c left join {s}.items i on "
            "i.category = c.name and i.status = 'active' group by c.name order by c.name")
        return [(r[0], int(r[1])) for r in rows]

    async def relevant_categories(self, task: str, hits: Sequence[Hit]) -> List[str]:
        return relevant_categories(task, hits, await self.categories())

    # ----------------------------------------------------------------- search

    async def _common_lexemes(self) -> List[str]:
        """Lexemes in more than COMMON_TERM_DOCS active items: left out of full-text queries,
        as every backend does (see COMMON_TERM_DOCS).

        They come from PostgreSQL's own statistics of the tsvector column
        (``pg_stats.most_common_elems``, kept by ANALYZE and autovacuum), read once per process
        and store and kept for STATS_TTL_S: counting GIN matches instead cannot stop early, so
        counting a word found in every item costs as much as ranking them all."""
        cached = _COMMON.get(self.location)
        now = time.monotonic()
        if cached is not None and now - cached[0] < STATS_TTL_S:
            return cached[1]
        rows = await self._query(
            "select s.most_common_elems::text::text[], s.most_common_elem_freqs, c.reltuples "
            "from pg_stats s, pg_class c where s.schemaname = %s and s.tablename = 'items' "
            "and s.attname = 'tsv' and c.oid = %s::regclass",
            (self.schema, f"{self.schema}.items"))
        common: List[str] = []
        if rows and rows[0][0]:
            lexemes, freqs, total = rows[0]
            common = [lex for lex, f in zip(lexemes, freqs) if f * max(total, 0) > COMMON_TERM_DOCS]
        _COMMON[self.location] = (now, common)
        return common

    async def search(self, text: str, k: int = 20, *, min_similarity: float | None = None,
                     vector: np.ndarray | None = None) -> List[Hit]:
        """Hybrid search: HNSW cosine top-k and tsvector top-k (ts_rank_cd), fused as every
        backend fuses (:mod:`sigil_core.memory.fusion`)."""
        if min_similarity is None:
            min_similarity = float(getattr(self.embedder, "min_similarity", 0.0))
        if vector is None:
            vector = (await in_embedding_thread(self.embed, [text]))[0]
        terms = [t for t in (_TSQUERY_WORD.sub("", w) for w in query_terms(text)) if t]
        s = self.schema
        cols = ", ".join(f"i.{c.strip()}" for c in ITEM_COLUMNS.split(","))
        # One round trip: both top-k lists with their items (each list ordered by its index).
        sql = (f"select 'v', v.d, {cols} from (select pk, embedding <=> %(q)s as d from "
               f"{s}.items where embedding is not null order by embedding <=> %(q)s "
               f"limit %(k)s) v join {s}.items i using (pk)")
        if terms:
            # The words whose lexemes are common are left out in the same statement.
            sql += (f" union all select 't', t.r, {cols} from (select pk, ts_rank_cd(tsv, q) as r "
                    f"from {s}.items, (select to_tsquery('english', string_agg(w, ' | ')) as q "
                    "from unnest(%(terms)s::text[]) w where not (tsvector_to_array("
                    "to_tsvector('english', w)) && %(common)s::text[])) qq where "
                    "status = 'active' and q is not null and numnode(q) > 0 and tsv @@ q "
                    f"order by r desc limit %(k)s) t join {s}.items i using (pk)")
        rows = await self._query(sql, {"q": np.asarray(vector, dtype=np.float32), "k": k,
                                       "terms": terms,
                                       "common": await self._common_lexemes() if terms else []})
        items = {r[3]: self._item(r[2:]) for r in rows}
        vec_hits = sorted(((r[3], 1.0 - float(r[1])) for r in rows if r[0] == "v"),
                          key=lambda h: -h[1])
        vec_hits = [h for h in vec_hits if h[1] >= min_similarity]
        # ts_rank_cd as the full-text score (positive, higher is better), as bm25 elsewhere.
        txt_hits = sorted(((r[3], float(r[1])) for r in rows if r[0] == "t" and r[1] > 0),
                          key=lambda h: -h[1])
        hits = []
        for f in fuse(vec_hits, txt_hits, k, mode=DEFAULT_MODE, floor=min_similarity,
                      vector_weight=float(getattr(self.embedder, "vector_weight",
                                                  VECTOR_WEIGHT))):
            item = items[f.key]
            item.score = round(f.score, 6)
            hits.append(Hit(item, f.score, f.vector_rank, f.text_rank, f.similarity))
        return hits

    # ----------------------------------------------------------------- writing

    async def remember(self, item: MemoryItem, *, session_id: str | None = None) -> RememberOutcome:
        return (await self.remember_many([item], session_id=session_id))[0]

    async def remember_many(self, items: Sequence[MemoryItem], *,
                            session_id: str | None = None) -> List[RememberOutcome]:
        """Store facts with consolidation; one transaction per fact (see the module docstring)."""
        import psycopg

        items = [validated(i) for i in items]
        if not items:
            return []
        vectors = await self._vectors_for(items)
        out: List[RememberOutcome] = []
        try:
            async with self.pool.connection() as conn:
                for n, item in enumerate(items):
                    out.append(await self._remember_one(conn, item, vectors[n], session_id))
        except psycopg.Error as exc:
            raise self._failed(exc, "storing") from None
        return out

    async def _vectors_for(self, items: Sequence[MemoryItem]) -> np.ndarray:
        """The items' vectors: a fact whose exact text is stored already (active, same type)
        is merged with it and needs no new embedding, so its stored vector stands in; the
        model runs for the others only (as memory_sqlite does)."""
        rows = await self._query(
            f"select content, memory_type, embedding from {self.schema}.items where status = "
            "'active' and embedding is not null and content_hash = any(%s)",
            (sorted({content_hash(i.content) for i in items}),))
        # pgvector's Vector/HalfVector (to_numpy), or an array as older versions load them
        known = {(r[0], r[1]): r[2].to_numpy() if hasattr(r[2], "to_numpy") else r[2]
                 for r in rows}
        missing = texts_to_embed(items, known)
        fresh = await in_embedding_thread(self.embed, missing) if missing else None
        return fill_vectors(items, known, fresh, self.dims)

    async def _remember_one(self, conn: Any, item: MemoryItem, vector: np.ndarray,
                            session_id: str | None) -> RememberOutcome:
        import psycopg

        s = self.schema
        # Related candidates are read before the transaction (read-only); the decision is
        # re-checked under row locks inside it.
        async with conn.cursor() as cur:
            await cur.execute(f"select id, 1 - (embedding <=> %s) from {s}.items where embedding "
                              "is not null order by embedding <=> %s limit %s",
                              (vector, vector, RELATED_K))
            related = [r[0] for r in await cur.fetchall() if r[1] >= RELATED_MIN_SIMILARITY]
        for attempt in range(RETRIES):
            try:
                async with conn.transaction():
                    outcome = await self._remember_in(conn, item, vector, related, session_id)
                if outcome is not None:
                    return outcome
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure,
                    psycopg.errors.UniqueViolation, _Conflict):
                pass  # rolled back: another writer changed what this fact meets; look again
            await asyncio.sleep(0.005 * (attempt + 1))
        raise MemoryBackendError(f"memory database at {self.location}: could not store "
                                 f"{item.content[:60]!r} after {RETRIES} attempts under "
                                 "concurrent writes", code="MEMORY_002", recoverable=True)

    async def _remember_in(self, conn: Any, item: MemoryItem, vector: np.ndarray,
                           related: List[str], session_id: str | None) -> RememberOutcome | None:
        """One fact, inside a transaction. None: another writer got there first; try again."""
        s = self.schema
        now = iso_ms(utcnow())
        session = item.source_session_id or session_id
        async with conn.cursor() as cur:
            await cur.execute(f"select {ITEM_COLUMNS} from {s}.items where content_hash = %s and "
                              "memory_type = %s and status = 'active' for update",
                              (content_hash(item.content), item.memory_type))
            row = await cur.fetchone()
            if row is None and item.subject and item.attribute:
                # The same subject and attribute: the newer fact replaces the older one (or is it).
                await cur.execute(f"select {ITEM_COLUMNS} from {s}.items where subject = %s and "
                                  "attribute = %s and status = 'active' order by pk desc limit 1 "
                                  "for update", (item.subject, item.attribute))
                cand = await cur.fetchone()
                if cand is not None:
                    if relate(cand[2], item.content, item.memory_type) == "same":
                        row = cand
                    else:
                        outcome = await self._supersede(cur, self._item(cand), item, vector,
                                                        session, now)
                        if outcome is None:
                            raise _Conflict  # superseded meanwhile: look again
                        return outcome
            if row is None:
                for rid in related:
                    await cur.execute(f"select {ITEM_COLUMNS} from {s}.items where id = %s and "
                                      "status = 'active'", (rid,))
                    cand = await cur.fetchone()
                    if cand is None:
                        continue
                    relation = relate(cand[2], item.content, item.memory_type)
                    if relation == "same":
                        await cur.execute(f"select {ITEM_COLUMNS} from {s}.items where pk = %s "
                                          "and status = 'active' for update", (cand[0],))
                        row = await cur.fetchone()
                        if row is not None:
                            break
                    if relation == "contradicts":
                        outcome = await self._supersede(cur, self._item(cand), item, vector,
                                                        session, now)
                        if outcome is not None:
                            return outcome
                        break  # it was superseded or forgotten meanwhile: store as new
            if row is not None:
                old = self._item(row)
                confidence = reinforce(old.confidence, item.confidence)
                await cur.execute(f"update {s}.items set times_seen = times_seen + 1, "
                                  "confidence = %s, updated_at = %s where pk = %s returning "
                                  "times_seen", (confidence, now, row[0]))
                seen = (await cur.fetchone())[0]
                if old.provider == OFFLINE_PROVIDER and item.provider not in (None,
                                                                            OFFLINE_PROVIDER):
                    # A real model found it too: no longer only the offline model's placeholder.
                    await cur.execute(f"update {s}.items set provider = %s, model = %s where "
                                      "pk = %s", (item.provider, item.model, row[0]))
                    old = attrs.evolve(old, provider=item.provider, model=item.model)
                await self._log(cur, old.id, "seen", item.content, item.confidence, session,
                                None, now)
                await self._touch_category(cur, old.category, now)
                return RememberOutcome(MemoryItem(
                    content=old.content, memory_type=old.memory_type,
                    confidence=round(confidence, 4), category=old.category, id=old.id,
                    source_session_id=old.source_session_id, created_at=old.created_at,
                    updated_at=now, times_seen=seen, provider=old.provider, model=old.model,
                    subject=old.subject, attribute=old.attribute), "merged")
            stored = await self._insert(cur, item, vector, session, now)
            return None if stored is None else RememberOutcome(stored, "new")

    async def _supersede(self, cur: Any, old: MemoryItem, item: MemoryItem, vector: np.ndarray,
                         session: str | None, now: str) -> RememberOutcome | None:
        s = self.schema
        if item.category is None and old.category:
            item = attrs.evolve(item, category=old.category)
        new = new_id()
        # Only while still active: of two writers superseding one fact, one wins here.
        await cur.execute(f"update {s}.items set status = 'superseded', superseded_by = %s, "
                          "updated_at = %s, embedding = null where id = %s and status = 'active' "
                          "returning pk", (new, now, old.id))
        if await cur.fetchone() is None:
            return None
        stored = await self._insert(cur, item, vector, session, now, event="supersedes",
                                    related_id=old.id, item_id=new)
        if stored is None:
            raise _Conflict  # the same new fact arrived meanwhile: roll back and retry
        await self._log(cur, old.id, "superseded", item.content, None, session, stored.id, now)
        return RememberOutcome(stored, "superseded", previous=old)

    async def _insert(self, cur: Any, item: MemoryItem, vector: np.ndarray | None,
                      session: str | None, now: str, event: str = "created",
                      related_id: str | None = None, item_id: str | None = None) -> MemoryItem | None:
        s = self.schema
        if item_id is None:
            item_id = item.id or new_id()
            if item.id:
                await cur.execute(f"select 1 from {s}.items where id = %s", (item.id,))
                if await cur.fetchone():
                    item_id = new_id()
        created = item.created_at or now
        updated = item.updated_at or now
        seen = max(1, item.times_seen)
        await cur.execute(
            f"insert into {s}.items(id, content, content_hash, memory_type, category, confidence, "
            "source_session_id, created_at, updated_at, times_seen, embedding, provider, model, "
            "subject, attribute) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "%s) on conflict (content_hash, memory_type) where status = 'active' do nothing "
            "returning pk",
            (item_id, item.content, content_hash(item.content), item.memory_type, item.category,
             item.confidence, session, created, updated, seen, vector, item.provider, item.model,
             item.subject, item.attribute))
        if await cur.fetchone() is None:
            return None
        await self._log(cur, item_id, event, item.content, item.confidence, session, related_id,
                        now)
        await self._touch_category(cur, item.category, now)
        return MemoryItem(content=item.content, memory_type=item.memory_type,
                          confidence=round(item.confidence, 4), category=item.category,
                          id=item_id, source_session_id=session, created_at=created,
                          updated_at=updated, times_seen=seen, provider=item.provider,
                          model=item.model, subject=item.subject, attribute=item.attribute)

    async def _log(self, cur: Any, item_id: str | None, event: str, content: str | None,
                   confidence: float | None, session: str | None, related_id: str | None,
                   at: str) -> None:
        await cur.execute(f"insert into {self.schema}.item_history(item_id, event, content, "
                          "confidence, session_id, related_id, at) values "
                          "(%s, %s, %s, %s, %s, %s, %s)",
                          (item_id, event, content, confidence, session, related_id, at))

    async def _touch_category(self, cur: Any, category: str | None, now: str) -> None:
        if category:
            await cur.execute(f"insert into {self.schema}.categories(name, created_at, "
                              "updated_at) values (%s, %s, %s) on conflict (name) do update "
                              "set updated_at = excluded.updated_at", (category, now, now))

    async def forget(self, item_id: str) -> bool:
        import psycopg

        s = self.schema
        try:
            async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                await cur.execute(f"delete from {s}.items where id = %s returning pk", (item_id,))
                if await cur.fetchone() is None:
                    return False
                await cur.execute(f"delete from {s}.item_history where item_id = %s", (item_id,))
                return True
        except psycopg.Error as exc:
            raise self._failed(exc, "storing") from None

    async def add_raw(self, items: Sequence[MemoryItem], vectors: np.ndarray | None = None, *,
                      session_id: str | None = None) -> int:
        """Insert items as new, without consolidation, with COPY (bulk loading, benchmarks).
        An item whose words and type are already active is skipped."""
        import psycopg

        items = [validated(i) for i in items]
        if vectors is None:
            vectors = await in_embedding_thread(self.embed, [i.content for i in items])
        vectors = np.asarray(vectors, dtype=np.float32)
        s = self.schema
        now = iso_ms(utcnow())
        cols = ("id, content, content_hash, memory_type, category, confidence, "
                "source_session_id, created_at, updated_at, times_seen, embedding, provider, "
                "model, subject, attribute")
        try:
            async with self.pool.connection() as conn, conn.transaction(), \
                    conn.cursor() as cur:
                await cur.execute(f"create temp table load_items (like {s}.items including "
                                  "defaults) on commit drop")
                async with cur.copy(f"copy load_items ({cols}) from stdin (format binary)") as cp:
                    cp.set_types(["text", "text", "text", "text", "text", "float8", "text",
                                  "text", "text", "int4", "vector", "text", "text", "text",
                                  "text"])
                    for it, vec in zip(items, vectors):
                        await cp.write_row((it.id or new_id(), it.content,
                                            content_hash(it.content), it.memory_type,
                                            it.category, it.confidence,
                                            it.source_session_id or session_id,
                                            it.created_at or now, it.updated_at or now,
                                            max(1, it.times_seen), vec, it.provider,
                                            it.model, it.subject, it.attribute))
                await cur.execute(f"insert into {s}.items ({cols}) select {cols} from "
                                  "load_items on conflict do nothing")
                n = cur.rowcount
                await cur.execute(
                    f"insert into {s}.item_history(item_id, event, content, confidence, "
                    "session_id, at) select id, 'created', content, confidence, "
                    f"source_session_id, %s from load_items l where exists (select 1 from "
                    f"{s}.items i where i.id = l.id and i.created_at = l.created_at)", (now,))
                await cur.execute(f"insert into {s}.categories(name, created_at, updated_at) "
                                  "select distinct category, %s, %s from load_items where "
                                  "category is not null on conflict (name) do update set "
                                  "updated_at = excluded.updated_at", (now, now))
        except psycopg.Error as exc:
            raise self._failed(exc, "storing") from None
        return n

    # ----------------------------------------------------------------- maintenance

    async def stats(self) -> dict[str, Any]:
        import psycopg
        import psycopg_pool

        s = self.schema
        by_type = dict(await self._query(f"select memory_type, count(*) from {s}.items where "
                                         "status = 'active' group by 1 order by 1"))
        rows = await self._query(
            f"select (select count(*) from {s}.items where embedding is not null), "
            f"pg_total_relation_size('{s}.items') + pg_total_relation_size('{s}.item_history'), "
            "current_setting('server_version'), (select extversion from pg_extension where "
            "extname = 'vector')")
        vectors, size, server, ext = rows[0]
        return {
            "backend": "pgvector",
            "location": self.location,
            "active": await self.count(),
            "superseded": await self.count("superseded"),
            "by_type": by_type,
            "categories": dict(await self.categories()),
            "embedder": self.embedder.name,
            "dimensions": self.dims,
            "vectors": int(vectors),
            "size_bytes": int(size),
            "driver": f"psycopg {psycopg.__version__} (pool {psycopg_pool.__version__}), "
                      f"PostgreSQL {server}, pgvector {ext}",
        }

    async def records(self) -> AsyncIterator[Record]:
        s = self.schema
        last = 0
        while True:
            rows = await self._query(f"select {ITEM_COLUMNS}, embedding from {s}.items where "
                                     "pk > %s order by pk limit 2000", (last,))
            if not rows:
                return
            hist = await self._query(
                f"select item_id, {', '.join(HISTORY_COLUMNS)} from {s}.item_history where "
                "item_id = any(%s) order by item_id, id",
                ([r[1] for r in rows],))
            by_item: dict[str, List[dict[str, Any]]] = {}
            for h in hist:
                by_item.setdefault(h[0], []).extend(history_entries([h[1:]]))
            for r in rows:
                last = r[0]
                vec = r[16]
                yield Record(item=self._item(r), status=r[10], superseded_by=r[11],
                             history=by_item.get(r[1], []),
                             vector=None if vec is None else _floats(vec))

    async def load(self, records: Sequence[Record]) -> int:
        """Copy records as they are: ids, status, history; the vectors when they are this
        store's dimensions (``migrate`` drops them when the embedders differ)."""
        import psycopg

        s = self.schema
        need = [r for r in records if r.status == "active" and
                (r.vector is None or len(r.vector) != self.dims)]
        fresh = (dict(zip((id(r) for r in need),
                          await in_embedding_thread(self.embed, [r.item.content for r in need])))
                 if need else {})
        n = 0
        try:
            async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                for rec in records:
                    it = rec.item
                    vec = None
                    if rec.status == "active":
                        vec = fresh.get(id(rec))
                        if vec is None:
                            vec = np.asarray(rec.vector, dtype=np.float32)
                    await cur.execute(
                        f"insert into {s}.items(id, content, content_hash, memory_type, "
                        "category, confidence, source_session_id, created_at, updated_at, "
                        "times_seen, status, superseded_by, embedding, provider, model, subject, "
                        "attribute) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                        "%s, %s, %s, %s) on conflict do nothing returning pk",
                        (it.id or new_id(), it.content, content_hash(it.content),
                         it.memory_type, it.category, it.confidence, it.source_session_id,
                         it.created_at, it.updated_at, it.times_seen, rec.status,
                         rec.superseded_by, vec, it.provider, it.model, it.subject,
                         it.attribute))
                    if await cur.fetchone() is None:
                        continue  # already there (same id, or the same fact active)
                    for h in rec.history:
                        await self._log(cur, it.id or "", h.get("event", "created"),
                                        h.get("content"), h.get("confidence"),
                                        h.get("session_id"), h.get("related_id"),
                                        h.get("at") or it.created_at or "")
                    await self._touch_category(cur, it.category,
                                               it.updated_at or it.created_at or "")
                    n += 1
        except psycopg.Error as exc:
            raise self._failed(exc, "storing") from None
        return n

    async def reindex(self, embedder: Any) -> int:
        """Re-embed every active item with ``embedder``; the vector column and its HNSW index
        are rebuilt for its dimensions."""
        import psycopg

        s = self.schema
        rows = await self._query(f"select pk, content from {s}.items where status = 'active' "
                                 "order by pk")
        dims = int(embedder.dimensions)
        old, self.embedder, self.dims = (self.embedder, self.dims), embedder, dims
        try:
            vectors = (await in_embedding_thread(self.embed, [r[1] for r in rows]) if rows
                       else np.zeros((0, dims)))
        except BaseException:
            self.embedder, self.dims = old
            raise
        try:
            async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                await cur.execute("select pg_advisory_xact_lock(%s)", (lock_key(s),))
                await cur.execute(f"drop index if exists {s}.items_embedding")
                await cur.execute(f"alter table {s}.items drop column if exists embedding")
                await cur.execute(f"alter table {s}.items add column embedding vector({dims})")
                await cur.executemany(f"update {s}.items set embedding = %s where pk = %s",
                                      [(v, r[0]) for r, v in zip(rows, vectors)])
                await cur.execute(f"create index items_embedding on {s}.items using hnsw "
                                  "(embedding vector_cosine_ops)")
                await cur.execute(f"insert into {s}.meta(key, value) values ('embedder', %s), "
                                  "('dimensions', %s) on conflict (key) do update set value = "
                                  "excluded.value", (embedder.name, str(dims)))
        except psycopg.Error as exc:
            self.embedder, self.dims = old
            raise self._failed(exc, "storing") from None
        return len(rows)


#: Common lexemes per store location: (when read, lexemes); see PgStore._common_lexemes.
_COMMON: dict[str, tuple[float, List[str]]] = {}
STATS_TTL_S = 300.0


class _Conflict(Exception):
    """Raised inside a transaction to roll it back and try the fact again."""


def _floats(vec: Any) -> List[float]:
    """A vector as read back (pgvector's Vector or a numpy array) as a list of floats."""
    return [float(x) for x in (vec.to_list() if hasattr(vec, "to_list") else vec)]
