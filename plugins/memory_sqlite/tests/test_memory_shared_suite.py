"""The memory behaviour every backend shares (sigil_core.memory.testing), on SQLite files."""

from __future__ import annotations

import pytest
from sigil_memory_sqlite.backend import SqliteBackend

from sigil_core.memory.embedders import HashingEmbedder
from sigil_core.memory.testing import MemoryStoreSuite


class TestSqliteBackend(MemoryStoreSuite):
    @pytest.fixture
    async def stores(self, tmp_path):
        opened = []

        async def open_(name="main", embedder=None, check_embedder=True):
            store = await SqliteBackend().open(None, embedder or HashingEmbedder(),
                                               check_embedder=check_embedder,
                                               location=str(tmp_path / f"{name}.db"))
            opened.append(store)
            return store

        yield open_
        for store in opened:
            await store.close()
