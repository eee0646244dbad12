"""How many HNSW candidates a query examines grows with the table (recall@20 >= 0.95 at 1M)."""

from __future__ import annotations

from sigil_memory_pgvector.backend import EF_SEARCH, PgStore, ef_search_for

from sigil_core import MemoryItem
from sigil_core.memory.embedders import HashingEmbedder


def test_ef_search_grows_with_the_table_within_pgvectors_limit():
    assert ef_search_for(0) == EF_SEARCH == 100
    assert ef_search_for(100_000) == 100
    assert ef_search_for(500_000) == 400
    assert ef_search_for(1_000_000) == 800  # measured: recall@20 0.97 at 1M
    assert ef_search_for(10_000_000) == 1000


async def test_every_pooled_connection_uses_the_stores_ef_search(pg_dsn, pg_schema):
    store = await PgStore.connect(pg_dsn, pg_schema, HashingEmbedder())
    try:
        assert store.ef_search == 100  # an empty (never analysed) table
        await store.remember(MemoryItem(content="Acme Corp buys the enterprise plan"))
    finally:
        await store.close()
    fixed = await PgStore.connect(pg_dsn, pg_schema, HashingEmbedder(), ef_search=640)
    try:
        assert fixed.ef_search == 640
        async with fixed.pool.connection() as conn:
            row = await (await conn.execute("show hnsw.ef_search")).fetchone()
        assert row[0] == "640"
        hits = await fixed.search("Acme enterprise plan", k=5)
        assert hits and hits[0].item.content == "Acme Corp buys the enterprise plan"
    finally:
        await fixed.close()
