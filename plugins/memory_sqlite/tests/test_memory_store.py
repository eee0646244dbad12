"""The store on real SQLite files: consolidation, search, history, failures."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sigil_memory_sqlite import index as vindex
from sigil_memory_sqlite.db import Database, driver
from sigil_memory_sqlite.embedders import HashingEmbedder
from sigil_memory_sqlite.store import EmbedderMismatch, MemoryStore, relate

from sigil_core import MemoryBackendError, MemoryItem


class OtherEmbedder:
    name = "other"
    dimensions = 64
    priority = 0

    def embed(self, texts):
        return [[float((hash(t) >> i) & 1) + 0.5 for i in range(64)] for t in texts]


@pytest.fixture
def memory_store(tmp_path):
    store = MemoryStore(tmp_path / "memory.db", HashingEmbedder())
    yield store
    store.close()


def fact(content, kind="fact", confidence=0.8, category=None):
    return MemoryItem(content=content, memory_type=kind, confidence=confidence, category=category)


def test_same_fact_twice_is_one_item_seen_twice(memory_store):
    first = memory_store.remember(fact("Acme Corp is based in Berlin", confidence=0.6))
    again = memory_store.remember(fact("acme corp is based in  BERLIN.", confidence=0.8))
    assert first.action == "new" and again.action == "merged"
    assert again.item.id == first.item.id
    items = memory_store.list()
    assert len(items) == 1
    assert items[0].times_seen == 2
    assert items[0].confidence > 0.6
    assert [h["event"] for h in memory_store.history(first.item.id)] == ["created", "seen"]


def test_reordered_or_qualified_fact_is_merged(memory_store):
    memory_store.remember(fact("Acme Corp prefers email communication", "preference"))
    out = memory_store.remember(fact("The client Acme Corp prefers email communication",
                                     "preference"))
    assert out.action == "merged"
    assert memory_store.count() == 1


def test_changed_number_supersedes_and_keeps_history(memory_store):
    old = memory_store.remember(fact("Acme Corp has a budget of 50000 dollars")).item
    new = memory_store.remember(fact("Acme Corp has a budget of 80000 dollars"))
    assert new.action == "superseded" and new.previous.id == old.id
    assert [i.id for i in memory_store.list()] == [new.item.id]
    assert memory_store.status(old.id) == ("superseded", new.item.id)
    assert memory_store.get(old.id).content.endswith("50000 dollars")
    assert memory_store.history(old.id)[-1]["event"] == "superseded"
    # the superseded fact is gone from both indexes
    hits = memory_store.search("Acme budget 50000")
    assert [h.item.id for h in hits] == [new.item.id]


def test_negation_and_preference_swap_supersede(memory_store):
    memory_store.remember(fact("The customer uses Salesforce"))
    assert memory_store.remember(fact("The customer does not use Salesforce")).action == "superseded"
    memory_store.remember(fact("Jane prefers morning meetings", "preference"))
    out = memory_store.remember(fact("Jane prefers afternoon meetings", "preference"))
    assert out.action == "superseded"
    assert memory_store.count() == 2 and memory_store.count("superseded") == 2


def test_unrelated_facts_stay_apart():
    assert relate("Acme is in Berlin", "Globex sells steel", "fact") is None
    assert relate("Acme uses Python", "Acme uses Go", "fact") is None  # both can be true


def test_hybrid_search_ranks_the_relevant_memory_first(memory_store):
    memory_store.add_raw([
        fact("Acme Corp's CTO John Smith wants an enterprise plan"),
        fact("Globex ordered 40 tonnes of steel last spring"),
        fact("The weekly sync moved to Thursdays"),
        fact("Initech's budget for analytics is 20000 euros"),
    ])
    hits = memory_store.search("enterprise plan for Acme")
    assert hits[0].item.content.startswith("Acme Corp's CTO")
    assert hits[0].vector_rank == 1 and hits[0].text_rank == 1
    assert all("steel" not in h.item.content for h in hits)


def test_forget_removes_item_and_indexes(memory_store):
    item = memory_store.remember(fact("Globex ordered steel")).item
    assert memory_store.forget(item.id) is True
    assert memory_store.forget(item.id) is False
    assert memory_store.search("Globex steel") == []
    assert memory_store.stats()["vectors"] == 0


def test_bad_items_are_rejected(memory_store):
    with pytest.raises(ValueError, match="memory type"):
        memory_store.remember(fact("x", kind="opinion"))
    with pytest.raises(ValueError, match="between 0 and 1"):
        memory_store.remember(fact("x", confidence=1.5))
    with pytest.raises(ValueError, match="empty"):
        memory_store.remember(fact("   "))


@pytest.mark.parametrize("warm", [False, True])
def test_quantised_search_matches_exact_on_clustered_vectors(tmp_path, monkeypatch, warm):
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((40, 384)).astype(np.float32)
    vecs = centres[rng.integers(0, 40, 3000)] + 0.5 * rng.standard_normal((3000, 384)).astype(
        np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store = MemoryStore(tmp_path / "m.db", HashingEmbedder())
    store.add_raw([fact(f"item {i}") for i in range(len(vecs))], vectors=vecs)
    monkeypatch.setattr(vindex, "EXACT_LIMIT", 100)
    monkeypatch.setattr(vindex, "candidates_for", lambda n, k: 600)
    monkeypatch.setattr(vindex, "RESIDENT_AFTER", 1)
    exact_rowids = np.argsort(-(vecs @ vecs[5]))[:20] + 1
    if warm:
        store.index.search(vecs[1], 20)  # the first query of a process goes to sqlite-vec
    got = store.index.search(vecs[5], 20)
    assert store.index.last_path == ("quantised-numpy" if warm else "quantised-file")
    recall = len({r for r, _ in got} & set(exact_rowids.tolist())) / 20
    assert recall >= 0.9
    # Vectors are stored as float16: cosines within 1e-4 of float32.
    assert got[0][0] == 6 and got[0][1] == pytest.approx(1.0, abs=1e-4)
    store.close()


def test_embedder_change_requires_reindex(tmp_path):
    path = tmp_path / "m.db"
    with MemoryStore(path, HashingEmbedder()) as store:
        store.remember(fact("Acme Corp is based in Berlin"))
    with pytest.raises(EmbedderMismatch, match="sigil memory reindex") as err:
        MemoryStore(path, OtherEmbedder())
    assert err.value.code == "MEMORY_004"
    with MemoryStore(path, OtherEmbedder(), check_embedder=False) as store:
        assert store.reindex(OtherEmbedder()) == 1
    with MemoryStore(path, OtherEmbedder()) as store:
        assert store.stats()["dimensions"] == 64
        assert store.search("Acme Corp is based in Berlin")[0].item.content.startswith("Acme")


def test_corrupted_file_is_memory_003_and_left_untouched(tmp_path):
    path = tmp_path / "memory.db"
    junk = b"this is not a database at all\n" * 200
    path.write_bytes(junk)
    with pytest.raises(MemoryBackendError) as err:
        MemoryStore(path, HashingEmbedder())
    assert err.value.code == "MEMORY_003" and err.value.recoverable
    assert path.read_bytes() == junk
    assert not (tmp_path / "memory.db-wal").exists()


def test_damaged_sqlite_file_is_memory_003(tmp_path):
    path = tmp_path / "memory.db"
    with MemoryStore(path, HashingEmbedder()) as store:
        store.add_raw([fact(f"fact number {i} about things") for i in range(300)])
    data = bytearray(path.read_bytes())
    data[4096:4096 * 6] = b"\xff" * (4096 * 5)  # wreck pages after the header
    path.write_bytes(bytes(data))
    with pytest.raises(MemoryBackendError) as err:
        store = MemoryStore(path, HashingEmbedder())
        store.list()
        store.search("fact number")
    assert err.value.code == "MEMORY_003"
    assert path.read_bytes() == bytes(data)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unwritable_directory_is_a_clear_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(MemoryBackendError, match="writable") as err:
            MemoryStore(locked / "memory.db", HashingEmbedder())
        assert err.value.code == "MEMORY_002"
    finally:
        locked.chmod(0o700)


def test_path_under_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(MemoryBackendError, match="writable") as err:
        MemoryStore(tmp_path / "afile" / "memory.db", HashingEmbedder())
    assert err.value.code == "MEMORY_002"


def test_migrations_apply_once_and_wal_is_on(tmp_path):
    path = tmp_path / "m.db"
    MemoryStore(path, HashingEmbedder()).close()
    db = Database(path)
    assert [r[0] for r in db.query("select name from _migrations")] == ["m001_initial",
                                                                        "m002_provenance"]
    assert db.query("pragma journal_mode")[0][0] == "wal"
    assert db.integrity_check() == "ok"
    db.close()


def test_driver_can_load_sqlite_vec():
    _module, name, _ = driver()
    assert name in ("sqlite3", "sqlean", "pysqlite3")
    assert name != "apsw"


def test_export_lines_carry_history(memory_store):
    memory_store.remember(fact("Acme Corp has a budget of 50000 dollars"))
    memory_store.remember(fact("Acme Corp has a budget of 80000 dollars"))
    records = list(memory_store.export())
    assert [r["status"] for r in records] == ["superseded", "active"]
    assert records[0]["superseded_by"] == records[1]["id"]
    assert records[1]["history"][0]["event"] == "supersedes"
