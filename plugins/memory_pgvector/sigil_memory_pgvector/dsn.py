"""Where the memory database is, and saying so without its password. Light: imported by
``sigil plugins`` (psycopg only inside :func:`describe`)."""

from __future__ import annotations

import os
from typing import Any


def resolve_dsn(settings: Any, location: str | None = None) -> str:
    """``location`` > SIGIL_MEMORY_DSN > ``memory.dsn``; ConfigError when none is set."""
    from sigil_core import ConfigError

    dsn = location or os.environ.get("SIGIL_MEMORY_DSN") or settings.dsn
    if not dsn or not str(dsn).strip():
        raise ConfigError("memory.backend is pgvector but no database is set: set memory.dsn "
                          "in the config or SIGIL_MEMORY_DSN, e.g. "
                          "postgresql://sigil@db.example/sigil")
    return str(dsn).strip()


def describe(dsn: str) -> tuple[str, str | None]:
    """``host:port/db`` of a DSN for messages, and its password (to scrub from messages)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - an unreadable DSN: name nothing from it
        return "an unreadable DSN", None
    host = str(info.get("host") or os.environ.get("PGHOST") or "localhost")
    if host.startswith("/"):
        host = f"socket {host}"
    port = info.get("port") or os.environ.get("PGPORT") or "5432"
    db = info.get("dbname") or info.get("user") or ""
    password = info.get("password")
    return f"{host}:{port}/{db}", str(password) if password else None


def scrub(text: str, password: str | None) -> str:
    line = " ".join(str(text).split())
    if password:
        line = line.replace(password, "***")
    return line
