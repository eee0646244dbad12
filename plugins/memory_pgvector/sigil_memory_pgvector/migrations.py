"""Versioned schema migrations, applied on first use inside the configured schema.

Each migration runs once, in its own transaction, recorded in ``<schema>.schema_migrations``.
Several hosts starting at once serialise on a transaction-scoped advisory lock keyed by the
schema name (DDL only: facts are never written under it), so each migration is applied once.
Add a migration by appending a function to :data:`MIGRATIONS`; never edit an applied one.

The vector column is not created here: its dimension is the embedder's, fixed when the store
is first bound to one (:meth:`PgStore._bind`), and changed by ``sigil memory reindex``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

Migration = Callable[[Any, str], Any]


async def m001_initial(cur: Any, s: str) -> None:
    await cur.execute(f"create table {s}.meta (key text primary key, value text not null)")
    await cur.execute(f"""
        create table {s}.items (
            pk bigserial primary key,
            id text not null unique,
            content text not null,
            content_hash text not null,
            memory_type text not null check (
                memory_type in ('fact', 'preference', 'event', 'skill', 'pattern')),
            category text,
            confidence double precision not null check (confidence >= 0 and confidence <= 1),
            source_session_id text,
            created_at text not null,
            updated_at text not null,
            times_seen integer not null default 1,
            status text not null default 'active' check (status in ('active', 'superseded')),
            superseded_by text,
            tsv tsvector generated always as (
                to_tsvector('english', content || ' ' || coalesce(category, ''))) stored
        )""")
    # One active item per (words, type): concurrent writers of the same fact meet here, and
    # the loser merges into the winner's row (upsert), so no fact is ever stored twice.
    await cur.execute(f"create unique index items_active_hash on {s}.items "
                      "(content_hash, memory_type) where status = 'active'")
    await cur.execute(f"create index items_tsv on {s}.items using gin (tsv) "
                      "where status = 'active'")
    await cur.execute(f"create index items_category on {s}.items (category)")
    await cur.execute(f"create index items_updated on {s}.items (updated_at desc, pk desc)")
    await cur.execute(f"""
        create table {s}.categories (
            name text primary key,
            description text,
            created_at text not null,
            updated_at text not null
        )""")
    # What happened to each item, oldest first: created, seen again, superseded.
    await cur.execute(f"""
        create table {s}.item_history (
            id bigserial primary key,
            item_id text not null,
            event text not null,
            content text,
            confidence double precision,
            session_id text,
            related_id text,
            at text not null
        )""")
    await cur.execute(f"create index item_history_item on {s}.item_history (item_id, id)")


async def m002_gin_without_pending_list(cur: Any, s: str) -> None:
    """GIN's fast-update pending list is scanned linearly by every query until a vacuum merges
    it: after a bulk load of 30k items a 26-row full-text lookup took 18 ms. Memory is read on
    every run and written a few facts at a time, so entries go straight into the index."""
    await cur.execute(f"alter index {s}.items_tsv set (fastupdate = off)")
    await cur.execute(f"select gin_clean_pending_list('{s}.items_tsv'::regclass)")


async def m003_provenance(cur: Any, s: str) -> None:
    """Where each fact came from (provider and model of the run that produced it) and what it
    is about (subject, attribute): a newer fact on the same pair supersedes the older one."""
    for column in ("provider", "model", "subject", "attribute"):
        await cur.execute(f"alter table {s}.items add column {column} text")
    await cur.execute(f"create index items_provider on {s}.items (provider)")
    await cur.execute(f"create index items_subject on {s}.items (subject, attribute) "
                      "where status = 'active' and subject is not null")


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_initial", m001_initial),
    ("002_gin_without_pending_list", m002_gin_without_pending_list),
    ("003_provenance", m003_provenance),
]


def lock_key(schema: str) -> int:
    """A 32-bit advisory lock key for ``schema`` (stable across processes and hosts)."""
    return zlib.crc32(f"sigil_memory:{schema}".encode())


async def migrate(conn: Any, schema: str) -> list[str]:
    """Apply the pending migrations; returns the names applied (empty when up to date)."""
    s = schema  # validated by MemorySettings: a plain lower-case SQL name, safe to inline
    applied: list[str] = []
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute("select pg_advisory_xact_lock(%s)", (lock_key(schema),))
        await cur.execute("create extension if not exists vector")
        await cur.execute(f"create schema if not exists {s}")
        await cur.execute(f"create table if not exists {s}.schema_migrations "
                          "(version text primary key, applied_at timestamptz not null "
                          "default now())")
        await cur.execute(f"select version from {s}.schema_migrations")
        done = {r[0] for r in await cur.fetchall()}
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            await fn(cur, s)
            await cur.execute(f"insert into {s}.schema_migrations(version) values (%s)", (name,))
            applied.append(name)
    return applied
