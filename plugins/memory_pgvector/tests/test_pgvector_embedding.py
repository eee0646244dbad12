"""The model runs on the embedding threads, never on the event loop: other runs go on while
it computes."""

from __future__ import annotations

import asyncio
import time

from sigil_memory_pgvector.backend import PgStore

from sigil_core import MemoryItem
from sigil_core.memory.testing import CountingEmbedder


class SlowEmbedder(CountingEmbedder):
    """Takes 0.2 s a call, as a model on a busy machine may, and notes where it ran."""

    def embed(self, texts):
        time.sleep(0.2)
        return super().embed(texts)


async def test_storing_and_searching_leave_the_event_loop_free(pg_dsn, pg_schema):
    embedder = SlowEmbedder()
    store = await PgStore.connect(pg_dsn, pg_schema, embedder)
    ticks = 0

    async def other_run():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.ensure_future(other_run())
    try:
        await store.remember_many([MemoryItem(content="Acme Corp buys the enterprise plan")])
        during_remember = ticks
        hits = await store.search("Acme enterprise plan", k=5)
        during_search = ticks - during_remember
    finally:
        ticker.cancel()
        await store.close()
    assert hits and hits[0].item.content == "Acme Corp buys the enterprise plan"
    assert embedder.threads and all(t.startswith("sigil-embed") for t in embedder.threads)
    # the loop ran the other run all along: ~20 ticks per 0.2 s embedding (none if blocked)
    assert during_remember >= 5 and during_search >= 5


async def test_a_fact_stored_word_for_word_is_merged_without_running_the_model(pg_dsn, pg_schema):
    embedder = CountingEmbedder()
    store = await PgStore.connect(pg_dsn, pg_schema, embedder)
    try:
        text = "Acme Corp buys the enterprise plan"
        first = (await store.remember_many([MemoryItem(content=text)]))[0]
        again = await store.remember_many([MemoryItem(content=text),
                                           MemoryItem(content="Globex has 500 employees")])
        assert [o.action for o in again] == ["merged", "new"]
        assert again[0].item.id == first.item.id
        assert embedder.texts == [text, "Globex has 500 employees"]
        other = text.lower() + "!"  # the same words written otherwise: embedded, then merged
        assert (await store.remember_many([MemoryItem(content=other)]))[0].action == "merged"
        assert embedder.texts[-1] == other
        assert (await store.search(text, k=5))[0].item.id == first.item.id
    finally:
        await store.close()
