"""`sigil memory migrate --from sqlite --to pgvector` and back, with the real CLI."""

from __future__ import annotations

import asyncio

import pytest
from pg_helpers import host
from sigil_memory_pgvector.backend import PgStore

from sigil_core.memory.embedders import HashingEmbedder
from sigil_core.memory.testing import fact

pytest.importorskip("sigil_memory_sqlite")


async def records_of(store) -> dict:
    return {r.item.id: r async for r in store.records()}


def test_migrate_sqlite_to_pgvector_and_back_copies_everything(tmp_path, pg_dsn, pg_schema):
    from sigil_memory_sqlite.backend import SqliteBackend

    env = host(tmp_path, "h", pg_dsn, pg_schema)
    source = str(tmp_path / "source.db")

    async def fill() -> dict:
        store = await SqliteBackend().open(None, HashingEmbedder(), location=source)
        try:
            await store.remember_many([fact("Acme Corp has a budget of 50000 dollars",
                                            category="acme"),
                                       fact("Initech sells printers to banks")])
            await store.remember_many([fact("Acme Corp has a budget of 80000 dollars"),
                                       fact("Initech sells printers to banks"),
                                       fact("John prefers email", "preference")])
            return await records_of(store)
        finally:
            await store.close()

    original = asyncio.run(fill())
    assert len(original) == 4
    proc = env("memory", "migrate", "--from", "sqlite", "--to", "pgvector",
                 "--from-location", source)
    assert proc.returncode == 0, proc.stderr
    assert "copied 4 of 4 memories (1 superseded" in proc.stdout and "vectors copied" in proc.stdout
    again = env("memory", "migrate", "--from", "sqlite", "--to", "pgvector",
                  "--from-location", source)
    assert again.returncode == 0 and "copied 0 of 4" in again.stdout

    async def in_pg() -> dict:
        store = await PgStore.connect(pg_dsn, pg_schema, HashingEmbedder())
        try:
            return await records_of(store)
        finally:
            await store.close()

    copied = asyncio.run(in_pg())
    back_path = str(tmp_path / "back.db")
    proc = env("memory", "migrate", "--from", "pgvector", "--to", "sqlite",
                 "--to-location", back_path)
    assert proc.returncode == 0, proc.stderr

    async def back() -> dict:
        store = await SqliteBackend().open(None, HashingEmbedder(), location=back_path)
        try:
            hits = await store.search("Initech printers")
            assert hits[0].item.times_seen == 2
            return await records_of(store)
        finally:
            await store.close()

    returned = asyncio.run(back())
    for copy in (copied, returned):
        assert copy.keys() == original.keys()
        for item_id, rec in original.items():
            got = copy[item_id]
            assert (got.item, got.status, got.superseded_by) == (rec.item, rec.status,
                                                                   rec.superseded_by)
            assert got.history == rec.history
            if rec.vector is None:
                assert got.vector is None
            else:  # float16 on SQLite: equal to its precision
                assert got.vector == pytest.approx(rec.vector, abs=2e-3)


def test_migrate_to_an_unknown_backend_is_a_usage_error(tmp_path, pg_dsn, pg_schema):
    env = host(tmp_path, "h", pg_dsn, pg_schema)
    proc = env("memory", "migrate", "--from", "sqlite", "--to", "mongo")
    assert proc.returncode == 2
    assert "unknown memory backend 'mongo'" in proc.stderr and "pgvector" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_memory_commands_work_on_pgvector(tmp_path, pg_dsn, pg_schema):
    """The shared `sigil memory` commands on this backend (memory.backend: pgvector)."""
    import json

    env = host(tmp_path, "h", pg_dsn, pg_schema)
    r = env("memory", "add", "Acme Corp has a budget of 50000 dollars", "-c", "acme")
    assert r.returncode == 0 and r.stdout.startswith("added mem_"), r.stderr
    old_id = r.stdout.split()[1]
    r = env("memory", "add", "Acme Corp has a budget of 80000 dollars")
    assert f"(supersedes {old_id})" in r.stdout
    new_id = r.stdout.split()[1]
    hits = [json.loads(x) for x in env("memory", "search", "Acme budget",
                                         "--json").stdout.splitlines()]
    assert [h["id"] for h in hits] == [new_id] and hits[0]["category"] == "acme"
    r = env("memory", "show", old_id)
    assert f"status: superseded (by {new_id})" in r.stdout
    assert len(env("memory", "list", "--all").stdout.splitlines()) == 2
    stats = json.loads(env("memory", "stats", "--json").stdout)
    assert stats["backend"] == "pgvector" and stats["active"] == 1 and stats["vectors"] == 1
    assert pg_schema in stats["location"]
    dump = tmp_path / "dump.jsonl"
    assert env("memory", "export", str(dump)).returncode == 0
    assert len(dump.read_text().splitlines()) == 2
    assert env("memory", "forget", new_id).stdout.strip() == "forgot 1 memory"
    r = env("memory", "forget", new_id)
    assert r.returncode == 2 and "no memory with id" in r.stderr
    r = env("memory", "import", str(dump))
    assert r.returncode == 0 and "1 new" in r.stdout, r.stderr
