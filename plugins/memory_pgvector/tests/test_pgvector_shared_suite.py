"""The memory behaviour every backend shares (sigil_core.memory.testing), on a real PostgreSQL
with pgvector (see conftest.py for how it is started)."""

from __future__ import annotations

import pytest
from sigil_memory_pgvector.backend import PgStore

from sigil_core.memory.embedders import HashingEmbedder
from sigil_core.memory.testing import MemoryStoreSuite


class TestPgvectorBackend(MemoryStoreSuite):
    @pytest.fixture
    async def stores(self, pg_server, pg_schema):
        opened = []

        async def open_(name="main", embedder=None, check_embedder=True):
            schema = pg_schema if name == "main" else f"{pg_schema}_{name}"
            store = await PgStore.connect(pg_server.dsn, schema, embedder or HashingEmbedder(),
                                          check_embedder=check_embedder)
            opened.append((store, schema))
            return store

        yield open_
        for store, schema in opened:
            await store.close()
            if schema != pg_schema:
                pg_server.drop_schema(schema)
