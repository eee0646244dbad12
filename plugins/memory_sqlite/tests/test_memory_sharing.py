"""Runs that overlap in one process share the open database; nothing stays open after them."""

from __future__ import annotations

import asyncio
import os
import sqlite3

from sigil_memory_sqlite import backend as sqlite_backend
from sigil_memory_sqlite.backend import SqliteBackend

from sigil_core import MemoryItem
from sigil_core.memory.embedders import HashingEmbedder


async def test_overlapping_opens_share_one_store_until_the_last_closes(tmp_path):
    embedder = HashingEmbedder()
    path = str(tmp_path / "memory.db")
    first = await SqliteBackend().open(None, embedder, location=path)
    second = await SqliteBackend().open(None, embedder, location=path)
    assert second.store is first.store
    await first.remember_many([MemoryItem(content="Acme Corp buys the enterprise plan",
                                          memory_type="fact")])
    await first.close()
    # the other run still reads and writes through it
    assert [h.item.content for h in await second.search("Acme enterprise")] \
        == ["Acme Corp buys the enterprise plan"]
    await second.close()
    assert not sqlite_backend._SHARED
    third = await SqliteBackend().open(None, embedder, location=path)
    assert third.store is not first.store  # closed with its last user: opened anew
    assert await third.count() == 1
    await third.close()


async def test_a_replaced_file_or_another_embedder_is_not_shared(tmp_path):
    embedder = HashingEmbedder()
    path = tmp_path / "memory.db"
    first = await SqliteBackend().open(None, embedder, location=str(path))
    other = await SqliteBackend().open(None, HashingEmbedder(), location=str(path))
    assert other.store is not first.store
    await other.close()
    # another program replaces the file while the first run has it open
    os.rename(path, tmp_path / "old.db")
    sqlite3.connect(path).close()
    fresh = await SqliteBackend().open(None, embedder, location=str(path))
    assert fresh.store is not first.store
    assert await fresh.count() == 0
    await fresh.close()
    await first.close()
    assert not sqlite_backend._SHARED


async def test_a_hundred_concurrent_runs_open_the_file_once(tmp_path, monkeypatch):
    embedder = HashingEmbedder()
    path = str(tmp_path / "memory.db")
    await (await SqliteBackend().open(None, embedder, location=path)).close()  # created
    opened = []
    real = sqlite_backend.SqliteStore.__init__

    def counting(self, executor, store, shared=None):
        opened.append(store)
        real(self, executor, store, shared)

    monkeypatch.setattr(sqlite_backend.SqliteStore, "__init__", counting)
    holder = await SqliteBackend().open(None, embedder, location=path)

    async def one_run(i):
        store = await SqliteBackend().open(None, embedder, location=path)
        await store.remember_many([MemoryItem(content=f"lead {i} wants {i} seats",
                                              memory_type="fact")])
        await store.close()

    await asyncio.gather(*(one_run(i) for i in range(100)))
    assert len({id(s) for s in opened}) == 1
    assert await holder.count() >= 1
    await holder.close()


async def test_runs_that_open_while_the_first_open_is_under_way_wait_for_it(tmp_path):
    embedder = HashingEmbedder()
    path = str(tmp_path / "memory.db")  # not there yet: the first open creates it
    stores = await asyncio.gather(*(SqliteBackend().open(None, embedder, location=path)
                                    for _ in range(20)))
    assert len({id(s.store) for s in stores}) == 1
    for s in stores:
        await s.close()
    assert not sqlite_backend._SHARED


async def test_a_failed_open_fails_every_waiter_with_its_own_error(tmp_path):
    embedder = HashingEmbedder()
    path = tmp_path / "memory.db"
    path.write_text("this is not a database")
    results = await asyncio.gather(*(SqliteBackend().open(None, embedder, location=str(path))
                                     for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)
    assert not sqlite_backend._SHARED
