"""Opening the memory database: the SQLite driver, pragmas, write transactions with retries.

The standard library's ``sqlite3`` is used when it can load extensions (sqlite-vec is one).
Many builds cannot (pyenv and macOS Pythons, this project's machines included); then a packaged
SQLite that can is chosen: ``sqlean.py``, else ``pysqlite3``. apsw is never imported: apsw and
sqlean in one process crash together at exit.

Several ``sigil`` processes may share one file. WAL lets readers run beside one writer; every
write is a ``BEGIN IMMEDIATE`` transaction (so a reader never has to upgrade its lock, the case
SQLite answers with an immediate SQLITE_BUSY), ``busy_timeout`` waits for the writer in front,
and a transaction that still meets SQLITE_BUSY is retried whole, with backoff.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

try:
    import fcntl
except ImportError:  # Windows: SQLite's own locking and our retries only
    fcntl = None  # type: ignore[assignment]

from sigil_core import (
    PRIVATE_FILE,
    MemoryBackendError,
    ensure_private_file,
    private_mkdir,
    private_open,
)

from . import migrations

T = TypeVar("T")

#: ``pragma application_id`` of every file this plugin creates ("SIGM"): a SQLite file with
#: another id (or none, and tables of its own) belongs to another application and is refused.
APPLICATION_ID = 0x5349474D
#: Tables of a file written by this plugin before it set the application id.
OWN_TABLES = frozenset({"_migrations", "meta", "items"})

BUSY_TIMEOUT_MS = 10_000
#: How long a write keeps retrying on SQLITE_BUSY before it gives up (MEMORY_002).
WRITE_DEADLINE_S = 60.0

_driver: tuple[ModuleType, str, str] | None = None


def _can_load_extensions(module: ModuleType) -> bool:
    try:
        conn = module.connect(":memory:")
    except Exception:  # noqa: BLE001
        return False
    try:
        if not hasattr(conn, "enable_load_extension"):
            return False
        conn.enable_load_extension(True)
        import sqlite_vec

        sqlite_vec.load(conn)
        conn.execute("select vec_version()")
        conn.execute("create virtual table t using fts5(x)")
        return True
    except Exception:  # noqa: BLE001
        return False
    finally:
        conn.close()


def driver() -> tuple[ModuleType, str, str]:
    """The DB-API module to use, its name and why it was chosen (cached per process)."""
    global _driver
    if _driver is not None:
        return _driver
    import sqlite3

    if _can_load_extensions(sqlite3):
        _driver = (sqlite3, "sqlite3", "the standard sqlite3 can load extensions")
        return _driver
    reason = "the standard sqlite3 cannot load extensions"
    for name in ("sqlean", "pysqlite3"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        if _can_load_extensions(module):
            _driver = (module, name, reason)
            return _driver
    raise MemoryBackendError(
        f"no usable SQLite: {reason} and neither sqlean.py nor pysqlite3 is installed "
        "(pip install sqlean.py)",
        code="MEMORY_001",
        recoverable=True,
    )


def driver_description() -> str:
    module, name, reason = driver()
    version = module.connect(":memory:").execute("select sqlite_version()").fetchone()[0]
    return f"{name} (SQLite {version}; {reason})"


def is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Database:
    """One connection to the memory file, with migrations applied.

    Raises MemoryBackendError: MEMORY_003 when the file is not a usable SQLite database (the
    file is left untouched), MEMORY_002 when the path cannot be created or written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self.module, self.driver_name, _ = driver()
        self._lock_fd: int | None = None
        self._lock_failed = False
        #: Called with the connection after each write commits, the writer lock still held
        #: (the vector side file follows the database there); their errors do not fail the
        #: write, which is already durable.
        self.after_commit: list[Callable[[Any], None]] = []
        #: The meta table as read at the start of :meth:`reading` (None outside one).
        self._meta: dict[str, Any] | None = None
        self.conn = self._open()

    # ----------------------------------------------------------------- opening

    def _open(self) -> Any:
        path = self.path
        if path.exists() and path.is_dir():
            raise MemoryBackendError(
                f"memory database path {path} is a directory; set memory.path or "
                "SIGIL_MEMORY_DB to a file", code="MEMORY_002")
        if not path.exists():
            try:
                private_mkdir(path.parent)
            except OSError as exc:
                raise self._unwritable(exc) from None
            if not os.access(path.parent, os.W_OK):
                raise self._unwritable(PermissionError("permission denied"))
            try:  # created 0600 before SQLite opens it; SQLite gives -wal/-shm the same mode
                ensure_private_file(path)
            except OSError as exc:
                raise self._unwritable(exc) from None
        elif not os.access(path, os.R_OK):
            raise self._unwritable(PermissionError("permission denied"))
        # A file that is not SQLite at all is refused by the first read below ("file is not a
        # database", MEMORY_003), before anything writes. It must not be opened and closed
        # from Python to look at its header: closing any descriptor of the file drops every
        # POSIX lock this process holds on it, including those of the SQLite connections other
        # runs of a long-lived process (sigil batch, a server) have open; another process then
        # takes itself for the last user, checkpoints and deletes the WAL under them, and their
        # next query fails with "disk I/O error".
        try:
            conn = self.module.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                                       check_same_thread=False)
        except self.module.OperationalError as exc:
            raise self._unwritable(exc) from None
        try:
            # Before any pragma that writes (journal_mode rewrites the header): a file that is
            # not ours is left exactly as it is.
            self._check_owner(conn)
            private(path)
            conn.enable_load_extension(True)
            import sqlite_vec

            sqlite_vec.load(conn)
            conn.enable_load_extension(False)
            conn.execute(f"pragma busy_timeout = {BUSY_TIMEOUT_MS}")
            self._retry(lambda: conn.execute("pragma journal_mode = wal").fetchone())
            conn.execute("pragma synchronous = normal")
            # Bulk writes touch index pages all over the file (random ids, hashes, FTS terms):
            # a 64 MB page cache (allocated only as used) keeps them from being re-read.
            conn.execute("pragma cache_size = -65536")
            conn.execute("pragma foreign_keys = on")
            self.conn = conn
            migrations.migrate(self)
        except MemoryBackendError:
            conn.close()
            raise
        except self.module.DatabaseError as exc:
            conn.close()
            if isinstance(exc, self.module.OperationalError) and (
                "readonly" in str(exc).lower() or "unable to open" in str(exc).lower()
            ):
                raise self._unwritable(exc) from None
            raise self._corrupted(exc) from None
        return conn

    def _check_owner(self, conn: Any) -> None:
        """Refuse another application's SQLite file (MEMORY_003, the file untouched).

        Ours: our application id; or no id and either no table at all (a new or empty file) or
        the tables this plugin writes first (a file from before the id was set, migrated)."""
        app_id = conn.execute("pragma application_id").fetchone()[0]
        if app_id == APPLICATION_ID:
            return
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
        if app_id == 0 and (not tables or OWN_TABLES <= tables):
            return
        owner = f"application id {app_id:#x}" if app_id else \
            f"tables {', '.join(sorted(tables)[:5])}{', ...' if len(tables) > 5 else ''}"
        raise MemoryBackendError(
            f"{self.path} is another application's SQLite database ({owner}), not a Sigil "
            "memory file; it was left untouched. Set memory.path or SIGIL_MEMORY_DB to another "
            "file", code="MEMORY_003", recoverable=True, context={"path": str(self.path)})

    def _unwritable(self, exc: BaseException) -> MemoryBackendError:
        return MemoryBackendError(
            f"cannot open memory database {self.path}: {exc}; set memory.path in the config "
            "or SIGIL_MEMORY_DB to a writable file",
            code="MEMORY_002", recoverable=True, context={"path": str(self.path)})

    def _corrupted(self, exc: BaseException | str) -> MemoryBackendError:
        return MemoryBackendError(
            f"memory database {self.path} is corrupted ({exc}); it was left untouched. Move it "
            "aside (or restore a backup) to start a new one",
            code="MEMORY_003", recoverable=True, context={"path": str(self.path)})

    # ----------------------------------------------------------------- use

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001, S110
            pass
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def execute(self, sql: str, params: Any = ()) -> Any:
        try:
            return self.conn.execute(sql, params)
        except self.module.DatabaseError as exc:
            raise self._translate(exc) from None

    def query(self, sql: str, params: Any = ()) -> list[Any]:
        def run() -> list[Any]:
            return self.conn.execute(sql, params).fetchall()

        try:
            return self._retry(run)
        except self.module.DatabaseError as exc:
            raise self._translate(exc) from None

    def write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction, retried whole on SQLITE_BUSY.

        Writers first queue on an OS file lock beside the database: the kernel wakes the next
        writer the moment the lock is released, where SQLite's busy handler would sleep on a
        fixed schedule (up to 100 ms a turn) and starve under steady contention.
        """

        def attempt() -> T:
            conn = self.conn
            with self._writer_lock():
                conn.execute("begin immediate")
                try:
                    result = fn(conn)
                    conn.execute("commit")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("rollback")
                    raise
                for callback in self.after_commit:
                    try:
                        callback(conn)
                    except Exception:  # noqa: BLE001 - see after_commit
                        if conn.in_transaction:
                            conn.execute("rollback")
            return result

        try:
            return self._retry(attempt)
        except self.module.DatabaseError as exc:
            raise self._translate(exc) from None

    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        if fcntl is None or self._lock_failed:
            yield
            return
        if self._lock_fd is None:
            try:
                self._lock_fd = private_open(Path(f"{self.path}.lock"), os.O_RDWR)
            except OSError:
                self._lock_failed = True  # e.g. a read-only directory: SQLite's locks still hold
                yield
                return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _retry(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + WRITE_DEADLINE_S
        delay = 0.005
        while True:
            try:
                return fn()
            except self.module.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.25)

    def _translate(self, exc: BaseException) -> MemoryBackendError:
        text = str(exc).lower()
        if "malformed" in text or "not a database" in text or "corrupt" in text:
            return self._corrupted(exc)
        if "readonly" in text or "unable to open" in text or "disk i/o" in text:
            return self._unwritable(exc)
        return MemoryBackendError(f"memory database {self.path}: {exc}", code="MEMORY_002",
                                  recoverable=True)

    # ----------------------------------------------------------------- metadata

    def meta(self, key: str, default: str | None = None) -> str | None:
        cached = self._meta
        if cached is not None:  # inside reading(): the snapshot's table, read once
            return cached.get(key, default)
        row = self.conn.execute("select value from meta where key = ?", (key,)).fetchone()
        return row[0] if row else default

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Several reads in one read transaction (a trip's searches): they see one state of
        the file, and :meth:`meta` answers from one read of the meta table instead of a
        statement each (a search asked it four times). Nothing may write inside; within a
        transaction already open, the reads simply join it."""
        conn = self.conn
        if conn.in_transaction or self._meta is not None:
            yield
            return
        def start() -> dict[str, Any]:
            conn.execute("begin")
            try:
                return dict(conn.execute("select key, value from meta").fetchall())
            except BaseException:
                if conn.in_transaction:
                    conn.execute("rollback")
                raise

        try:
            self._meta = self._retry(start)  # busy (a WAL being recovered): as any read
        except self.module.DatabaseError as exc:
            raise self._translate(exc) from None
        try:
            yield
        finally:
            self._meta = None
            if conn.in_transaction:
                conn.execute("commit")

    @staticmethod
    def set_meta(conn: Any, key: str, value: Any) -> None:
        conn.execute("insert into meta(key, value) values (?, ?) on conflict(key) do update set "
                     "value = excluded.value", (key, str(value)))

    @staticmethod
    def bump_generation(conn: Any) -> None:
        """Every write moves the generation on, so other processes drop their cached index."""
        conn.execute("insert into meta(key, value) values ('generation', '1') on conflict(key) "
                     "do update set value = cast(value as integer) + 1")

    def application_id(self) -> int:
        return int(self.conn.execute("pragma application_id").fetchone()[0])

    def integrity_check(self) -> str:
        return self.conn.execute("pragma integrity_check").fetchone()[0]


def private(path: Path) -> None:
    """Make the database and its -wal/-shm files 0600 when they are readable by others
    (files from before this rule, or made under a lax umask); not ours to change: left as is."""
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.lock"),
              Path(f"{path}.vectors")):
        try:
            if p.stat().st_mode & 0o077:
                os.chmod(p, PRIVATE_FILE)
        except OSError:
            pass
