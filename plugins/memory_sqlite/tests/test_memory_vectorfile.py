"""The vector side file (``<db>.vectors``): one-shot queries answer from it, it follows every
write (this process's and other processes'), and a damaged, stale or foreign one is never
believed: the answer always matches the database."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from memory_helpers import clustered
from sigil_memory_sqlite import index as vindex
from sigil_memory_sqlite import vectorfile
from sigil_memory_sqlite.embedders import HashingEmbedder
from sigil_memory_sqlite.store import MemoryStore

from sigil_core import MemoryItem


def fact(content):
    return MemoryItem(content=content, memory_type="fact", confidence=0.8)


@pytest.fixture
def cold(tmp_path, monkeypatch):
    """3,000 vectors, pre-filter on, every query a one-shot one (never resident)."""
    monkeypatch.setattr(vindex, "EXACT_LIMIT", 100)
    monkeypatch.setattr(vindex, "candidates_for", lambda n, k: 600)
    monkeypatch.setattr(vindex, "RESIDENT_AFTER", 10**9)
    vecs = clustered(3000, seed=11)
    path = tmp_path / "m.db"
    with MemoryStore(path, HashingEmbedder()) as store:
        store.add_raw([fact(f"item {i}") for i in range(len(vecs))], vectors=vecs)
    vindex.forget_resident(path)
    yield path, vecs
    vindex.forget_resident(path)


def exact(vecs, q, k=20):
    return set((np.argsort(-(vecs @ q))[:k] + 1).tolist())


def search(path, q, k=20):
    """A fresh store, as a new `sigil` process opens it (nothing cached in this process)."""
    vindex.forget_resident(path)
    with MemoryStore(path, HashingEmbedder()) as store:
        got = store.index.search(q, k)
        return got, store.index.last_path


def test_one_shot_queries_answer_from_the_side_file(cold):
    path, vecs = cold
    assert vectorfile.side_path(path).exists()
    assert oct(vectorfile.side_path(path).stat().st_mode & 0o777) == "0o600"
    got, how = search(path, vecs[5])
    assert how == "quantised-file"
    assert got[0][0] == 6 and got[0][1] == pytest.approx(1.0, abs=1e-4)
    assert len({r for r, _ in got} & exact(vecs, vecs[5])) / 20 >= 0.9


def test_the_side_file_follows_writes_and_removals(cold):
    path, vecs = cold
    new = clustered(50, seed=99)
    with MemoryStore(path, HashingEmbedder()) as store:
        added = store.add_raw([fact(f"later {i}") for i in range(50)], vectors=new)
        victim = store.db.query("select id from items where rowid = 1")[0][0]
        assert store.forget(victim)  # rowid 1: the nearest to vecs[0]
        rowid_of_new = store._rowid(added[7].id)
    view = vectorfile.open_view(vectorfile.side_path(path), 384, 6)
    assert view is not None and len(view.segments) >= 2  # appended, not rewritten
    got, how = search(path, new[7])
    assert how == "quantised-file" and got[0][0] == rowid_of_new
    got, _ = search(path, vecs[0])
    assert 1 not in {r for r, _ in got}  # the forgotten vector is not found


def test_rows_a_writer_did_not_publish_are_read_from_sqlite(cold):
    """A writer that crashed between its commit and the side file: readers still see it."""
    path, _vecs = cold
    new = clustered(5, seed=5)
    with MemoryStore(path, HashingEmbedder()) as store:
        store.db.after_commit.clear()
        added = store.add_raw([fact(f"unpublished {i}") for i in range(5)], vectors=new)
        rowid = store._rowid(added[2].id)
    before = vectorfile.side_path(path).read_bytes()
    got, how = search(path, new[2])
    assert how == "quantised-file" and got[0][0] == rowid
    assert vectorfile.side_path(path).read_bytes() == before  # a few rows: not rewritten


@pytest.mark.parametrize("damage", ["garbage-after-commit", "zeroed-segment", "bad-magic",
                                    "truncated", "missing", "restored-backup"])
def test_a_damaged_or_stale_side_file_is_never_believed(cold, damage):
    path, vecs = cold
    side = vectorfile.side_path(path)
    data = bytearray(side.read_bytes())
    header = vectorfile.HEADER.unpack_from(data)
    if damage == "garbage-after-commit":  # a crash in the middle of an append
        data += os.urandom(5000)
    elif damage == "zeroed-segment":  # the header reached the disk, the data did not
        data[vectorfile.HEADER.size + 16:vectorfile.HEADER.size + 4096] = bytes(4080)
    elif damage == "bad-magic":
        data[:8] = b"NOTOURS!"
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "restored-backup":  # the file has seen writes the database has not
        data[:vectorfile.HEADER.size] = vectorfile.HEADER.pack(
            header[0], header[1], header[2], header[3], header[4] + 5, *header[5:])
    if damage == "missing":
        side.unlink()
    else:
        side.write_bytes(bytes(data))
    vindex.forget_resident(path)
    got, how = search(path, vecs[9])
    assert got[0][0] == 10 and len({r for r, _ in got} & exact(vecs, vecs[9])) / 20 >= 0.9
    assert how == "quantised-file"
    if damage != "garbage-after-commit":
        assert vectorfile.open_view(side, 384, 6).generation == header[4]  # rebuilt


def test_a_copy_of_another_database_side_file_is_not_used(cold, tmp_path):
    path, _vecs = cold
    other = tmp_path / "other.db"
    with MemoryStore(other, HashingEmbedder()) as store:
        store.add_raw([fact(f"other {i}") for i in range(3000)], vectors=clustered(3000, seed=3))
    vectorfile.side_path(other).write_bytes(vectorfile.side_path(path).read_bytes())
    vindex.forget_resident(other)
    got, _ = search(other, clustered(3000, seed=3)[4])
    assert got[0][0] == 5  # another codes_epoch: rebuilt from its own database


def test_without_a_writable_directory_sqlite_alone_answers(cold, monkeypatch):
    path, vecs = cold
    vectorfile.side_path(path).unlink()

    def refuse(*args, **kwargs):
        raise PermissionError("read-only directory")

    monkeypatch.setattr(vectorfile, "rewrite", refuse)
    got, how = search(path, vecs[3])
    assert how == "quantised-vec0-codes" and got[0][0] == 4


def test_another_process_writing_is_seen_by_a_one_shot_query(cold):
    path, _vecs = cold
    new = clustered(3, seed=21)
    code = textwrap.dedent(f"""
        import numpy as np
        from sigil_memory_sqlite.store import MemoryStore
        from sigil_memory_sqlite.embedders import HashingEmbedder
        from sigil_core.model import MemoryItem
        vec = np.array({new[1].tolist()!r}, dtype=np.float32)
        with MemoryStore({str(path)!r}, HashingEmbedder()) as s:
            out = s.add_raw([MemoryItem(content="from another process", memory_type="fact",
                                        confidence=0.8)], vectors=vec[None, :])
            print(s._rowid(out[0].id))
    """)
    rowid = int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                               text=True).stdout.strip())
    got, how = search(path, new[1])
    assert how == "quantised-file" and got[0][0] == rowid
