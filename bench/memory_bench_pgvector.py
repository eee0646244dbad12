"""The PostgreSQL + pgvector half of ``bench/memory_bench.py --backend pgvector``.

Same synthetic corpus and queries as the SQLite figures (``Corpus(seed=n)``), loaded into a
PostgreSQL 16 + pgvector started for the run (the ``pgserver`` package, see
``sigil_memory_pgvector.testing``; or ``SIGIL_TEST_PG_DSN``). Prints: bulk load rate (COPY, then
the HNSW index built once), insert rate with the index in place, single ``remember()`` rate
(consolidated, one transaction each), hybrid top-20 latency through ``PgStore.search`` (HNSW
cosine + tsvector/GIN in one round trip, rank fusion, items loaded) p50/p95, and recall@20 of
the HNSW half against exact brute force, each next to its target.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from typing import Any

import numpy as np

from sigil_core.memory.embedders import HashingEmbedder
from sigil_core.model import MemoryItem

TARGET_P50_MS = {100_000: 20.0, 1_000_000: 60.0}
TARGET_RECALL = 0.95
BATCH = 10_000
#: Queries run untimed before the timed ones (other items than the timed queries).
WARMUP = 100
#: hnsw.ef_search values measured besides the backend's default (same index, same queries).
EF_SWEEP = (100, 200, 400, 800)


def maintenance_mb(n: int) -> int:
    """maintenance_work_mem for building the HNSW index over ``n`` items."""
    return 1024 if n <= 200_000 else 4096


def item_id(pos: int) -> str:
    return f"mem_{pos:012x}"


async def _run(dsn: str, n: int, queries: int, corpus: Any, dims: int, vocab: list[str]) -> None:
    from sigil_memory_pgvector.backend import PgStore

    schema = f"bench_{n}"
    async with await __import__("psycopg").AsyncConnection.connect(dsn, autocommit=True) as c:
        await c.execute(f"drop schema if exists {schema} cascade")
    store = await PgStore.connect(dsn, schema, HashingEmbedder())
    try:
        async with store.pool.connection() as conn:
            await conn.execute(f"drop index {schema}.items_embedding")
        topics = corpus.rng.integers(0, len(corpus.centres), n)
        vecs = np.empty((n, dims), dtype=np.float32)
        load_s = 0.0
        for start in range(0, n, BATCH):
            t = topics[start:start + BATCH]
            v = corpus.vectors(t, 0.8)
            vecs[start:start + len(t)] = v
            items = [MemoryItem(content=corpus.text(int(tp), start + j), category=f"c{tp % 50}",
                                id=item_id(start + j)) for j, tp in enumerate(t)]
            t0 = time.perf_counter()
            await store.add_raw(items, vectors=v)
            load_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        async with store.pool.connection() as conn:
            # The graph must fit in maintenance_work_mem or pgvector builds it on disk, many
            # times slower: ~1.7 GB at 1M items of 384 dims.
            await conn.execute(f"set maintenance_work_mem = '{maintenance_mb(n)}MB'")
            await conn.execute("set max_parallel_maintenance_workers = 1")
            await conn.execute(f"create index items_embedding on {schema}.items using hnsw "
                               "(embedding vector_cosine_ops)")
            await conn.execute(f"analyze {schema}.items")
        index_s = time.perf_counter() - t0
        await store.close()
        store = await PgStore.connect(dsn, schema, HashingEmbedder())  # a fresh process's pool

        qi = corpus.rng.integers(0, n, queries)
        qvecs = vecs[qi] + (corpus.rng.standard_normal((queries, dims)).astype(np.float32)
                            * corpus.scale * 0.5) @ corpus.basis.T
        qvecs /= np.linalg.norm(qvecs, axis=1, keepdims=True)
        qtexts = ["note on " + " ".join(vocab[w] for w in corpus.rng.choice(
            corpus.topic_words[topics[i]], 3, replace=False)) for i in qi]
        exacts = [set(np.argpartition(-(vecs @ q), 20)[:20].tolist()) for q in qvecs]

        t0 = time.perf_counter()
        await store.search(qtexts[0], k=20, vector=qvecs[0], min_similarity=0.0)
        first_ms = (time.perf_counter() - t0) * 1000
        # Warm the server's cache with other queries first (a server in use has the index's
        # upper layers in memory): otherwise whichever setting is measured first pays for
        # reading the index from disk (82 ms vs 50 ms p50 at 1M with the same ef_search).
        wi = corpus.rng.integers(0, n, WARMUP)
        for i in wi:
            await store.search("note on " + " ".join(vocab[w] for w in corpus.rng.choice(
                corpus.topic_words[topics[i]], 3, replace=False)), k=20, vector=vecs[i],
                min_similarity=0.0)
        lat, vlat, recalls = await _queries(store, schema, qvecs, qtexts, exacts)
        sweep = []
        for ef in EF_SWEEP:
            if ef == store.ef_search:
                continue
            other = await PgStore.connect(dsn, schema, HashingEmbedder(), ef_search=ef)
            try:
                sweep.append((ef, *await _queries(other, schema, qvecs, qtexts, exacts)))
            finally:
                await other.close()

        extra = 2000
        t = corpus.rng.integers(0, len(corpus.centres), extra)
        items = [MemoryItem(content=corpus.text(int(tp), n + j), category=f"c{tp % 50}",
                            id=item_id(n + j)) for j, tp in enumerate(t)]
        t0 = time.perf_counter()
        await store.add_raw(items, vectors=corpus.vectors(t, 0.8))
        indexed_rate = extra / (time.perf_counter() - t0)
        singles = 200
        t0 = time.perf_counter()
        for i in range(singles):
            await store.remember(MemoryItem(content=f"single write {i}: " + corpus.text(
                int(topics[i]), n + extra + i), category="singles"))
        single_rate = singles / (time.perf_counter() - t0)
        stats = await store.stats()
        p50, p95 = np.percentile(lat, 50), np.percentile(lat, 95)
        recall = float(np.mean(recalls))
        target = TARGET_P50_MS.get(n)
        print(f"--- pgvector: {n:,} items, {dims} dims ({stats['size_bytes'] / 1e6:,.0f} MB, "
              f"{stats['driver']}, HNSW m=16 ef_construction=64, ef_search={store.ef_search} for this size)")
        print(f"bulk load rate (COPY):       {n / load_s:,.0f} items/s, then the HNSW index "
              f"built in {index_s:.0f} s")
        print(f"insert rate, index in place: {indexed_rate:,.0f} items/s (COPY batch of {extra})")
        print(f"single-item remember():      {single_rate:,.0f} items/s (one transaction each, "
              "consolidated)")
        print(f"first query of the process:  {first_ms:.1f} ms")
        print(f"hybrid top-20:               p50 {p50:.2f} ms, p95 {p95:.2f} ms"
              + (f"  (target p50 <= {target:.0f} ms: {'met' if p50 <= target else 'MISSED'})"
                 if target else ""))
        print(f"vector top-20 alone (HNSW):  p50 {np.percentile(vlat, 50):.2f} ms, "
              f"p95 {np.percentile(vlat, 95):.2f} ms")
        print(f"recall@20 vs brute force:    {recall:.3f} (min {min(recalls):.2f})  (target >= "
              f"{TARGET_RECALL}: {'met' if recall >= TARGET_RECALL else 'MISSED'})")
        for ef, slat, svlat, srec in sweep:
            print(f"  with ef_search={ef}:       hybrid p50 {np.percentile(slat, 50):.2f} ms, "
                  f"p95 {np.percentile(slat, 95):.2f} ms; vector alone p50 "
                  f"{np.percentile(svlat, 50):.2f} ms; recall@20 {np.mean(srec):.3f} "
                  f"(min {min(srec):.2f})")
    finally:
        await store.close()
        async with await __import__("psycopg").AsyncConnection.connect(dsn,
                                                                       autocommit=True) as c:
            await c.execute(f"drop schema if exists {schema} cascade")


async def _queries(store: Any, schema: str, qvecs: Any, qtexts: list[str],
                   exacts: list[set[int]]) -> tuple[list[float], list[float], list[float]]:
    """Hybrid latency, HNSW-only latency and recall@20 of the HNSW half, per query."""
    lat, vlat, recalls = [], [], []
    for q, text, exact in zip(qvecs, qtexts, exacts):
        t0 = time.perf_counter()
        hits = await store.search(text, k=20, vector=q, min_similarity=0.0)
        lat.append((time.perf_counter() - t0) * 1000)
        assert hits
        t0 = time.perf_counter()
        rows = await store._query(f"select id from {schema}.items where embedding is not "
                                  "null order by embedding <=> %s limit 20", (q,))
        vlat.append((time.perf_counter() - t0) * 1000)
        got = {int(r[0][4:], 16) for r in rows}
        recalls.append(len(got & exact) / 20)
    return lat, vlat, recalls


_server: Any = None


def run_pg(n: int, queries: int, corpus: Any, dims: int, vocab: list[str]) -> None:
    """One size on PostgreSQL + pgvector (the server is started once per process)."""
    global _server
    if _server is None:
        from sigil_memory_pgvector.testing import start_server

        _server, reason = start_server(tempfile.mkdtemp(prefix="sigil-pg-bench-"))
        if _server is None:
            print(f"--- pgvector: skipped, no PostgreSQL with pgvector could be started: {reason}")
            return
        import atexit

        atexit.register(_server.stop)
    asyncio.run(_run(_server.dsn, n, queries, corpus, dims, vocab))
