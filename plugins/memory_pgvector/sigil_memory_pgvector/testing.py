"""Starting a throwaway PostgreSQL with pgvector, for this plugin's tests and benchmark.

:func:`start_server` tries, in order:

1. ``SIGIL_TEST_PG_DSN``: a server you run yourself (the vector extension must be available);
2. the ``pgserver`` package (PyPI; PostgreSQL 16 + pgvector 0.6 in the wheel), started in a
   folder of ours. PostgreSQL refuses to run as root: run as root, pgserver creates a
   ``pgserver`` system user (``useradd``), gives the data folder to it, opens read/traverse
   permissions on the folder's parents and its own binaries, and starts the server as that user;
   we connect over its Unix socket in the data folder;
3. the system's PostgreSQL (``/usr/lib/postgresql/*/bin``) when its ``vector`` extension is
   installed: ``initdb`` + ``pg_ctl`` in a folder of ours, as the ``postgres`` user when we are
   root.

Each returns ``(server, None)`` or ``(None, reason)``; the tests skip with the reasons.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


class PgServer:
    def __init__(self, dsn: str, kind: str, stop: Any = None) -> None:
        self.dsn = dsn
        self.kind = kind
        self._stop = stop

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql)

    def drop_schema(self, name: str) -> None:
        try:
            self.execute(f"drop schema if exists {name} cascade")
        except Exception:  # noqa: BLE001, S110 - best effort clean-up after a test
            pass

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


def _usable(dsn: str) -> str | None:
    """None when ``dsn`` accepts connections and can create the vector extension."""
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute("create extension if not exists vector")
    except Exception as exc:  # noqa: BLE001 - the reason is reported
        return " ".join(str(exc).split())
    return None


def _from_env() -> tuple[PgServer | None, str]:
    dsn = os.environ.get("SIGIL_TEST_PG_DSN")
    if not dsn:
        return None, "SIGIL_TEST_PG_DSN not set"
    problem = _usable(dsn)
    return (PgServer(dsn, "SIGIL_TEST_PG_DSN"), "") if problem is None else (
        None, f"SIGIL_TEST_PG_DSN: {problem}")


def _pgserver(base: Path) -> tuple[PgServer | None, str]:
    try:
        import pgserver
    except ImportError:
        return None, "the pgserver package is not installed (pip install pgserver)"
    # A folder of its own under the system temp dir, not ``base``: run as root, the server runs
    # as another user, which must be able to traverse every parent (pytest's base is 0700), and
    # its Unix socket path must stay short.
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="sigil-pg-")) / "data"
    try:
        server = pgserver.get_server(folder, cleanup_mode="delete")
        dsn = server.get_uri()
    except Exception as exc:  # noqa: BLE001 - the reason is reported
        return None, f"pgserver: {' '.join(str(exc).split())[:300]}"
    problem = _usable(dsn)
    def stop() -> None:
        server.cleanup()
        shutil.rmtree(folder.parent, ignore_errors=True)

    if problem is not None:
        stop()
        return None, f"pgserver: {problem}"
    return PgServer(dsn, "pgserver", stop), ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _system(base: Path) -> tuple[PgServer | None, str]:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        return None, "no system PostgreSQL (/usr/lib/postgresql/*/bin/initdb)"
    bindir = Path(bins[-1]).parent
    share = Path(str(bindir).replace("/usr/lib/", "/usr/share/").rsplit("/bin", 1)[0])
    if not (share / "extension" / "vector.control").exists():
        return None, f"the system PostgreSQL has no vector extension ({share}/extension)"
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return None, "running as root without runuser to start the system PostgreSQL"
        prefix = ["runuser", "-u", "postgres", "--"]
    data = base / "system-pg"
    data.mkdir(parents=True, exist_ok=True)
    if prefix:
        shutil.chown(data, "postgres")
    port = _free_port()
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                        "--auth=trust"], check=True, capture_output=True, timeout=120)
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l",
                        str(data / "log"), "-o", f"-p {port} -k {data} -h 127.0.0.1", "start"],
                       check=True, capture_output=True, timeout=120)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"system PostgreSQL: {exc}"

    def stop() -> None:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True, timeout=60, check=False)

    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    for _ in range(50):
        if _usable(dsn) is None:
            return PgServer(dsn, "system", stop), ""
        time.sleep(0.2)
    stop()
    return None, f"system PostgreSQL: {_usable(dsn)}"


def start_server(base: str | os.PathLike[str]) -> tuple[PgServer | None, str]:
    """A running PostgreSQL with pgvector, or None and why not (each way tried, see above)."""
    reasons = []
    for attempt in (_from_env, lambda: _pgserver(Path(base)), lambda: _system(Path(base))):
        server, reason = attempt()
        if server is not None:
            return server, ""
        reasons.append(reason)
    return None, "; ".join(reasons)
