"""Several processes writing one database at once: no lock errors, no lost writes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from sigil_memory_sqlite.db import Database

WRITER = textwrap.dedent(
    """
    import sys
    from sigil_core.model import MemoryItem
    from sigil_memory_sqlite.embedders import HashingEmbedder
    from sigil_memory_sqlite.store import MemoryStore

    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = MemoryStore(path, HashingEmbedder())
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()  # start together
    for i in range(n):
        # one transaction per item: the most contended way to write
        store.remember(MemoryItem(content=f"writer {tag} learned fact number {i} about topic "
                                          f"{i * 7919 % 1000} in region {tag}{i}"))
    store.close()
    print("done")
    """
)


def test_two_processes_write_1000_items_each(tmp_path):
    path = tmp_path / "shared.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, "1000"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for tag in ("alpha", "beta")
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        _out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        assert "locked" not in err
    db = Database(path)
    assert db.query("select count(*) from items")[0][0] == 2000
    assert db.query("select count(*) from item_embeddings")[0][0] == 2000
    assert db.query("select count(*) from memory_vec")[0][0] == 2000
    assert db.query("select count(*) from items_fts where items_fts match 'writer'")[0][0] == 2000
    assert int(db.meta("vector_count")) == 2000
    assert db.integrity_check() == "ok"
    db.close()


def test_a_file_another_run_is_creating_is_not_taken_for_a_foreign_database(tmp_path):
    """The first open of a new file marks it as Sigil's in the transaction that creates its
    first table; a second open while the first is still migrating waits instead of refusing the
    file (seen in CI: "another application's SQLite database (tables _migrations)")."""
    import threading

    from sigil_memory_sqlite import migrations
    inside, release = threading.Event(), threading.Event()
    name, first = migrations.MIGRATIONS[0]

    def slow(conn):
        inside.set()
        assert release.wait(10)
        first(conn)

    migrations.MIGRATIONS[0] = (name, slow)
    try:
        _race(tmp_path, inside, release)
    finally:
        migrations.MIGRATIONS[0] = (name, first)


def _race(tmp_path, inside, release):
    import threading

    from sigil_memory_sqlite.embedders import HashingEmbedder
    from sigil_memory_sqlite.store import MemoryStore

    path = tmp_path / "memory.db"
    opened, errors = [], []

    def open_store():
        try:
            opened.append(MemoryStore(path, HashingEmbedder()))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    creator = threading.Thread(target=open_store)
    creator.start()
    assert inside.wait(10)  # the creator holds the write lock inside its first migration
    second = threading.Thread(target=open_store)
    second.start()
    second.join(0.5)  # the second open checks the file meanwhile, then waits for the lock
    release.set()
    creator.join(20)
    second.join(20)
    assert not errors, errors
    assert len(opened) == 2
    for store in opened:
        store.close()
