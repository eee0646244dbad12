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
