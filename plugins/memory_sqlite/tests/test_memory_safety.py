"""Foreign files, side effects of read-only commands, oversized items, file modes (issue 11)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from sigil_memory_sqlite.db import APPLICATION_ID, Database
from sigil_memory_sqlite.embedders import HashingEmbedder
from sigil_memory_sqlite.store import MemoryStore

from sigil_core import MemoryBackendError, MemoryItem
from sigil_core.memory import consolidation
from sigil_core.memory.consolidation import MAX_ITEM_CHARS
from sigil_core.memory.phases import fit_to_allocation

sys.path.insert(0, str(Path(__file__).parent))
from memory_helpers import LEAD, completed, events


def foreign_db(path) -> bytes:
    """Another application's SQLite file (a browser history, say), returned as bytes."""
    conn = sqlite3.connect(path)
    conn.execute("create table urls (id integer primary key, url text, title text)")
    conn.executemany("insert into urls(url, title) values (?, ?)",
                     [(f"https://example.org/{i}", f"page {i}") for i in range(50)])
    conn.commit()
    conn.close()
    return path.read_bytes()


def test_foreign_sqlite_file_is_memory_003_and_untouched(tmp_path):
    path = tmp_path / "memory.db"
    before = foreign_db(path)
    with pytest.raises(MemoryBackendError) as err:
        MemoryStore(path, HashingEmbedder())
    assert err.value.code == "MEMORY_003" and err.value.recoverable
    assert str(path) in err.value.message and "another application" in err.value.message
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory.db"]


def test_file_with_another_application_id_is_refused(tmp_path):
    path = tmp_path / "memory.db"
    conn = sqlite3.connect(path)
    conn.execute("pragma application_id = 1234")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(MemoryBackendError, match="application id 0x4d2"):
        MemoryStore(path, HashingEmbedder())
    assert path.read_bytes() == before


def test_own_files_carry_the_application_id_and_old_ones_are_migrated(tmp_path):
    path = tmp_path / "memory.db"
    with MemoryStore(path, HashingEmbedder()) as store:
        store.remember(MemoryItem("Acme Corp is based in Berlin"))
        assert store.db.application_id() == APPLICATION_ID
    # A file written before the id existed: our tables, no id. It is ours and gets the id.
    conn = sqlite3.connect(path)
    conn.execute("pragma application_id = 0")
    conn.commit()
    conn.close()
    with MemoryStore(path, HashingEmbedder()) as store:
        assert store.count() == 1
        assert store.db.application_id() == APPLICATION_ID


def test_run_goes_on_without_memory_next_to_a_foreign_file(memory_cli):
    memory_cli.home.mkdir(exist_ok=True)
    db = memory_cli.home / "memory.db"
    before = foreign_db(db)
    r = memory_cli("orchestrate", LEAD, "-s", "foreign")
    assert r.returncode == 0, r.stderr
    evs = events(memory_cli.cwd, "foreign")
    failed = [e for e in evs if e["operation"] == "retrieve_context"
              and e.get("error_info", {}).get("error_code") == "MEMORY_003"]
    assert failed and str(db) in json.dumps(failed[0]), failed[0]
    assert db.read_bytes() == before
    r = memory_cli("memory", "add", "a fact")
    assert r.returncode == 1 and "MEMORY_003" in r.stderr and str(db) in r.stderr
    assert db.read_bytes() == before


@pytest.mark.parametrize("args", [
    ("list",), ("search", "acme"), ("show", "mem_000000000000"),
    ("forget", "mem_000000000000"), ("stats",), ("stats", "--json"), ("export",),
])
def test_read_only_commands_create_nothing(memory_cli, args):
    r = memory_cli("memory", *args)
    assert "Traceback" not in r.stderr
    assert r.returncode in (0, 2)
    if args[0] in ("show", "forget"):
        assert r.returncode == 2 and "no memory with id" in r.stderr
    assert not list(memory_cli.home.rglob("*"))  # the harness made the folder, nothing in it


def test_add_refuses_an_oversized_item(memory_cli):
    r = memory_cli("memory", "add", "x " * (MAX_ITEM_CHARS // 2 + 10))
    assert r.returncode == 2, r.stderr
    assert f"at most {MAX_ITEM_CHARS:,}" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not (memory_cli.home / "memory.db").exists()


def test_import_refuses_an_oversized_item_naming_the_line(memory_cli, tmp_path):
    src = tmp_path / "big.jsonl"
    src.write_text(json.dumps({"content": "small fact"}) + "\n"
                   + json.dumps({"content": "word " * 1_000_000}) + "\n")
    r = memory_cli("memory", "import", str(src))
    assert r.returncode == 2 and "line 2" in r.stderr and "at most" in r.stderr
    assert memory_cli("memory", "list").stdout == ""


def test_store_refuses_oversized_content(tmp_path):
    with MemoryStore(tmp_path / "m.db", HashingEmbedder()) as store, \
            pytest.raises(ValueError, match="at most"):
        store.remember(MemoryItem("y" * (MAX_ITEM_CHARS + 1)))


def test_memories_are_cut_to_their_share_of_the_allocation():
    items = [MemoryItem("short fact"), MemoryItem("long " * 5000), MemoryItem("another fact")]
    out, truncated, dropped = fit_to_allocation(items, allocation_tokens=4000, filter_to=10)
    assert truncated == 1 and dropped == 0
    assert len(out[1].content) <= 4000 * 0.25 * 4 / 10 and out[1].content.endswith("…")
    assert items[1].content == "long " * 5000  # the stored item is not changed
    many = [MemoryItem(f"fact {i} " + "z" * 300) for i in range(40)]
    out, _, dropped = fit_to_allocation(many, allocation_tokens=4000, filter_to=10)
    assert sum(len(m.content) for m in out) <= 4000 * 0.25 * 4 and dropped == 40 - len(out)


def test_a_huge_stored_memory_does_not_break_later_runs(memory_cli, monkeypatch):
    """A memory of several MB, stored before the cap existed: retrieval cuts it to its share,
    so the run is not refused by the budget (TOKEN_001)."""
    monkeypatch.setattr(consolidation, "MAX_ITEM_CHARS", 10**8)
    head = "John Smith of Acme Corp asked about enterprise plan pricing."
    emb = HashingEmbedder()
    with MemoryStore(memory_cli.home / "memory.db", emb) as store:
        store.add_raw([MemoryItem(head + " notes" * 600_000, category="acme")],
                      vectors=np.asarray(emb.embed([head]), dtype=np.float32))
    r = memory_cli("orchestrate", LEAD, "-s", "huge")
    assert r.returncode == 0, r.stderr[-2000:]
    ret = completed(events(memory_cli.cwd, "huge"), "retrieve_context")[0]["metadata"]
    assert ret["rag_results"] == 1 and ret["memories_truncated"] == 1


def test_files_and_directories_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        path = tmp_path / "a" / "b" / "memory.db"
        store = MemoryStore(path, HashingEmbedder())
        store.remember(MemoryItem("Acme Corp is based in Berlin"))
        for p in (path, path.with_name("memory.db-wal"), path.with_name("memory.db.lock")):
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        for d in (tmp_path / "a", tmp_path / "a" / "b"):
            assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
        store.close()
    finally:
        os.umask(old)


def test_an_existing_world_readable_database_is_made_private(tmp_path):
    path = tmp_path / "memory.db"
    MemoryStore(path, HashingEmbedder()).close()
    path.chmod(0o644)
    Database(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
