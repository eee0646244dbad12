"""A real PostgreSQL with pgvector for the tests, started by them.

Tried in order: ``SIGIL_TEST_PG_DSN`` (a server you run, with the vector extension available),
then the ``pgserver`` package (PostgreSQL 16 + pgvector in a wheel, started in a temporary
folder; as root it runs the server as a ``pgserver`` system user it creates with ``useradd``,
since PostgreSQL refuses to run as root), then the system's PostgreSQL (``initdb`` +
``pg_ctl`` from /usr/lib/postgresql/*/bin, as an unprivileged user when we are root) when its
vector extension is installed. Tests that need a server skip with the reason when none starts.
Each test gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # pg_helpers

from sigil_memory_pgvector.testing import PgServer, start_server


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> PgServer:
    server, reason = start_server(tmp_path_factory.mktemp("pg"))
    if server is None:
        pytest.skip(f"no PostgreSQL with pgvector could be started: {reason}")
    yield server
    server.stop()


@pytest.fixture
def pg_dsn(pg_server) -> str:
    return pg_server.dsn


@pytest.fixture
def pg_schema(pg_server) -> str:
    name = "t_" + secrets.token_hex(5)
    yield name
    pg_server.drop_schema(name)


@pytest.fixture
def pg_env(pg_dsn, pg_schema, monkeypatch):
    monkeypatch.setenv("SIGIL_MEMORY_DSN", pg_dsn)
    return {"SIGIL_MEMORY_DSN": pg_dsn, "schema": pg_schema, **os.environ}
