"""SQLite's locks survive a second open of the memory database in the same process.

POSIX advisory locks belong to the process and the file: closing *any* descriptor of the file
releases all of them. A long-lived process (``sigil batch``, many runs at once) opens the memory
database once per run; if an open reads the file through Python first, the other runs'
connections lose their locks, another process closing its connection takes itself for the last
user and deletes the WAL, and the runs here fail with "disk I/O error".
"""

from __future__ import annotations

import subprocess
import sys

from sigil_memory_sqlite.db import Database


def _write_from_another_process(path) -> None:
    code = (
        "from sigil_memory_sqlite.db import Database\n"
        f"d = Database({str(path)!r})\n"
        "d.conn.execute(\"insert into meta(key, value) values ('other', '2') on conflict(key) "
        "do update set value = excluded.value\")\n"
        "d.close()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_second_open_keeps_the_first_connections_locks(tmp_path):
    path = tmp_path / "memory.db"
    first = Database(path)
    first.conn.execute("insert into meta(key, value) values ('probe', '1') "
                       "on conflict(key) do update set value = excluded.value")
    second = Database(path)  # another run of this process opens the same file
    try:
        _write_from_another_process(path)
        # The other process saw this one still using the database: it left the WAL alone.
        assert (tmp_path / "memory.db-wal").exists()
        assert (tmp_path / "memory.db-shm").exists()
        assert first.meta("probe") == "1" and first.meta("other") == "2"
        assert second.meta("other") == "2"
    finally:
        second.close()
        first.close()


def test_a_file_that_is_not_sqlite_is_still_refused_untouched(tmp_path):
    import pytest

    from sigil_core import MemoryBackendError

    path = tmp_path / "memory.db"
    data = b"this is a text file, not a database\n" * 100
    path.write_bytes(data)
    with pytest.raises(MemoryBackendError) as info:
        Database(path)
    assert info.value.code == "MEMORY_003"
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory.db"]


async def test_a_database_error_mid_query_is_a_recoverable_memory_error(tmp_path):
    import pytest
    from sigil_memory_sqlite.backend import SqliteStore

    from sigil_core import Config, MemoryBackendError
    from sigil_core.memory.embedders import HashingEmbedder

    store = await SqliteStore.open(Config(), HashingEmbedder(), location=str(tmp_path / "m.db"))
    try:
        module = store.store.db.module

        def broken(*args, **kwargs):
            raise module.OperationalError("disk I/O error")

        store.store.search = broken
        with pytest.raises(MemoryBackendError) as info:
            await store.search("anything")
        assert info.value.recoverable and "disk I/O error" in str(info.value)
    finally:
        await store.close()
