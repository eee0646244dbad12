"""The vector index: cold and resident paths, incremental sync across processes, the full-text
half skipping words found everywhere, and upgrading a database of the previous layout."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from memory_helpers import clustered
from sigil_memory_sqlite import index as vindex
from sigil_memory_sqlite import store as vstore
from sigil_memory_sqlite.embedders import HashingEmbedder
from sigil_memory_sqlite.store import MemoryStore

from sigil_core import MemoryItem


def fact(content, category=None):
    return MemoryItem(content=content, memory_type="fact", confidence=0.8, category=category)


@pytest.fixture
def memory_vectors_store(tmp_path, monkeypatch):
    """3,000 clustered vectors with the pre-filter on (EXACT_LIMIT lowered)."""
    monkeypatch.setattr(vindex, "EXACT_LIMIT", 100)
    monkeypatch.setattr(vindex, "candidates_for", lambda n, k: 600)
    monkeypatch.setattr(vindex, "RESIDENT_AFTER", 1)
    vecs = clustered(3000)
    store = MemoryStore(tmp_path / "m.db", HashingEmbedder())
    store.add_raw([fact(f"item {i}") for i in range(len(vecs))], vectors=vecs)
    yield store, vecs
    store.close()
    vindex.forget_resident(store.path)


def recall(got, vecs, q, k=20):
    exact = set((np.argsort(-(vecs @ q))[:k] + 1).tolist())
    return len({r for r, _ in got} & exact) / k


def test_vec0_storage_read_matches_vec0(memory_vectors_store):
    store, _ = memory_vectors_store
    ids, codes = vindex.read_vec0_codes(store.db, 384)
    assert ids.tolist() == list(range(1, 3001))
    for rowid in (1, 1500, 3000):
        blob = store.db.query("select code from memory_vec where rowid = ?", (rowid,))[0][0]
        assert codes[rowid - 1].tobytes() == blob
    victim = store.list(limit=1)[0]
    store.forget(victim.id)
    ids, _ = vindex.read_vec0_codes(store.db, 384)
    assert len(ids) == 2999 and 3000 not in ids.tolist()


@pytest.mark.parametrize("path", ["quantised-file", "quantised-vec0-codes",
                                  "quantised-sqlite-vec"])
def test_cold_paths_find_the_exact_neighbours(memory_vectors_store, monkeypatch, path):
    store, vecs = memory_vectors_store
    if path != "quantised-file":  # no side file (e.g. a read-only directory): SQLite alone
        store.index.side_failed = True
    if path == "quantised-sqlite-vec":  # sqlite-vec storage not readable: vec0's own KNN
        monkeypatch.setattr(vindex, "read_vec0_codes", lambda db, dims: None)
    got = store.index.search(vecs[5], 20)
    assert store.index.last_path == path
    assert got[0][0] == 6 and got[0][1] == pytest.approx(1.0, abs=1e-4)
    assert recall(got, vecs, vecs[5]) >= 0.9


def test_resident_copy_follows_other_processes_incrementally(memory_vectors_store):
    store, vecs = memory_vectors_store
    store.index.search(vecs[1], 20)
    store.index.search(vecs[2], 20)  # second query: the vectors are now held in memory
    res = store.index.resident
    assert store.index.last_path == "quantised-numpy" and res.full_loads == 1
    forgotten = store.db.query("select id from items where rowid = 6")[0][0]
    writer = textwrap.dedent(
        """
        import sys, numpy as np
        from sigil_core.model import MemoryItem
        from sigil_memory_sqlite.embedders import HashingEmbedder
        from sigil_memory_sqlite.store import MemoryStore
        store = MemoryStore(sys.argv[1], HashingEmbedder())
        v = np.zeros((1, 384), dtype=np.float32); v[0, 0] = 1.0
        store.add_raw([MemoryItem(content="a brand new vector")], vectors=v)
        assert store.forget(sys.argv[2])
        store.close()
        """
    )
    subprocess.run([sys.executable, "-c", writer, str(store.path), forgotten], check=True,
                   timeout=120)
    axis = np.zeros(384, dtype=np.float32)
    axis[0] = 1.0
    got = store.index.search(axis, 20)
    assert store.index.last_path == "quantised-numpy"
    assert got[0] == (3001, pytest.approx(1.0, abs=1e-4))
    assert 6 not in [r for r, _ in store.index.search(vecs[5], 20)]
    assert res.full_loads == 1  # appended and tombstoned, not reloaded
    assert res.n - res.n_dead == store.index.count() == 3000
    # A store opened later in the same process shares the copy.
    other = MemoryStore(store.path, HashingEmbedder())
    assert other.index.resident is res
    other.close()


def test_resident_copy_survives_many_removals_and_reindex(memory_vectors_store):
    store, vecs = memory_vectors_store
    store.index.search(vecs[1], 20)
    store.index.search(vecs[2], 20)
    res = store.index.resident
    for item_id in [r[0] for r in store.db.query("select id from items where rowid <= 1200")]:
        store.forget(item_id)
    got = store.index.search(vecs[1500], 20)
    assert got[0][0] == 1501 and all(r > 1200 for r, _ in got)
    assert res.n_dead < 1200  # compacted along the way
    assert res.n - res.n_dead == 1800
    store.reindex(HashingEmbedder())  # re-embeds the texts: a new epoch, a full reload
    loads = res.full_loads
    store.index.search(vecs[1], 20)
    store.index.search(vecs[1], 20)
    assert store.index.resident is res and res.full_loads == loads + 1
    assert res.n - res.n_dead == 1800


def test_words_found_everywhere_are_left_out_of_full_text(tmp_path, monkeypatch):
    monkeypatch.setattr(vstore, "COMMON_TERM_DOCS", 50)
    with MemoryStore(tmp_path / "m.db", HashingEmbedder()) as store:
        store.add_raw([fact(f"widget report number {i}") for i in range(120)]
                      + [fact("the zebra widget report")])
        assert store.text_search("widget report", 20) == []
        zebra = store.text_search("widget zebra report", 20)
        assert len(zebra) == 1
        assert store.search("widget zebra")[0].item.content == "the zebra widget report"


def test_previous_layout_is_upgraded_in_place(tmp_path):
    path = tmp_path / "m.db"
    with MemoryStore(path, HashingEmbedder()) as store:
        store.add_raw([fact(f"Acme fact number {i} about topic {i % 7}") for i in range(50)])
        vecs = store.embed([f"Acme fact number {i} about topic {i % 7}" for i in range(50)])

        def downgrade(conn):  # what version 1 of this module wrote
            conn.execute("drop table item_embeddings")
            conn.execute("drop table vector_removed")
            conn.execute("create table item_vectors (rowid integer primary key, "
                         "embedding blob not null)")
            conn.execute("create table item_codes (rowid integer primary key, code blob not null)")
            conn.executemany("insert into item_vectors values (?, ?)",
                             [(i + 1, v.tobytes()) for i, v in enumerate(vecs)])
            conn.execute("delete from meta where key = 'vector_layout'")

        store.db.write(downgrade)
    vindex.forget_resident(path)
    with MemoryStore(path, HashingEmbedder()) as store:
        assert store.db.meta("vector_layout") == vindex.LAYOUT
        tables = {r[0] for r in store.db.query("select name from sqlite_master")}
        assert "item_embeddings" in tables and "item_vectors" not in tables
        assert store.search("Acme fact number 17")[0].item.content.startswith(
            "Acme fact number 17 ")
        assert store.db.integrity_check() == "ok"


def test_codes_are_read_once_per_write_and_resident_comes_later(memory_vectors_store,
                                                                 monkeypatch):
    store, vecs = memory_vectors_store
    monkeypatch.setattr(vindex, "RESIDENT_AFTER", 3)
    store.index.side_failed = True  # the path without a side file
    reads = []
    real = vindex.read_vec0_codes
    monkeypatch.setattr(vindex, "read_vec0_codes", lambda db, d: reads.append(1) or real(db, d))
    for i in range(3):
        assert store.index.search(vecs[i], 20)[0][0] == i + 1
        assert store.index.last_path == "quantised-vec0-codes"
    assert len(reads) == 1  # no write in between: the codes read once
    store.remember(fact("a new fact changes the generation"))
    store.index.search(vecs[7], 20)
    assert store.index.last_path == "quantised-numpy"  # the fourth query loads everything


# ----------------------------------------------------------------- the scan kernels, blocked


@pytest.mark.parametrize("n", [1, 4095, 4096, 4097, 10_000])
def test_blocked_hamming_equals_a_plain_popcount(n):
    rng = np.random.default_rng(n)
    words = 6
    codes = rng.integers(0, 2**63, (words, n), dtype=np.uint64)
    code = rng.integers(0, 2**63, words, dtype=np.uint64)
    plain = sum(np.bitwise_count(codes[j] ^ code[j]).astype(np.int64) for j in range(words))
    assert np.array_equal(vindex.hamming(codes, n, code), plain)
    out = np.full(n + 3, 7, dtype=np.uint16)
    vindex.hamming(codes, n, code, out[1:n + 1])
    assert np.array_equal(out[1:n + 1], plain) and out[0] == out[-1] == 7


@pytest.mark.parametrize("wanted", [1, 5, 300, 999])
def test_nearest_takes_the_smallest_distances_and_never_a_removed_row(wanted):
    rng = np.random.default_rng(wanted)
    dist = rng.integers(0, 385, 9_000).astype(np.uint16)
    dead = rng.choice(9_000, 2_000, replace=False)
    dist[dead] = np.iinfo(np.uint16).max
    got = vindex.nearest(dist, wanted)
    assert len(got) == wanted and len(set(got.tolist())) == wanted
    assert not set(got.tolist()) & set(dead.tolist())
    assert dist[got].max() <= np.sort(dist)[wanted - 1]
    # Asked for more than the live rows: every live row, no removed one.
    live = vindex.nearest(dist, 8_000)
    assert sorted(live.tolist()) == sorted(set(range(9_000)) - set(dead.tolist()))


@pytest.mark.parametrize("positions", [None, "some"])
def test_block_rescoring_equals_one_matrix_product(positions):
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((1_000, 384)).astype(np.float16)
    q = rng.standard_normal(384).astype(np.float32)
    pos = None if positions is None else np.sort(rng.choice(1_000, 333, replace=False))
    out = np.empty(1_000 if pos is None else 333, dtype=np.float32)
    vindex.score_rows(vectors, pos, q, out)
    whole = vectors.astype(np.float32) @ q
    np.testing.assert_allclose(out, whole if pos is None else whole[pos], rtol=1e-5, atol=1e-4)
