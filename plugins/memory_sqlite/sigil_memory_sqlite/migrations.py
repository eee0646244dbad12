"""The schema's history: named, append-only migrations, applied in order (simonw/llm style).

Never edit a migration that has shipped; add a new one at the bottom. Each runs in its own
``BEGIN IMMEDIATE`` transaction and is recorded in ``_migrations``, so two processes opening a
new file at once apply each migration exactly once.

The vector tables (``memory_vec``: sqlite-vec ``vec0`` of the binary codes, and
``item_vectors``: exact float32 vectors) depend on the embedder's dimensions, so they are
created by :mod:`.store` when an embedder is first bound, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .db import Database

MIGRATIONS: list[tuple[str, Callable[[Any], None]]] = []


def migration(fn: Callable[[Any], None]) -> Callable[[Any], None]:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_initial(conn: Any) -> None:
    conn.execute("create table meta (key text primary key, value text)")
    conn.execute(
        """
        create table items (
            rowid integer primary key,
            id text not null unique,
            content text not null,
            content_hash text not null,
            memory_type text not null check (
                memory_type in ('fact', 'preference', 'event', 'skill', 'pattern')),
            category text,
            confidence real not null check (confidence >= 0 and confidence <= 1),
            source_session_id text,
            created_at text not null,
            updated_at text not null,
            times_seen integer not null default 1,
            status text not null default 'active' check (status in ('active', 'superseded')),
            superseded_by text
        )
        """
    )
    conn.execute("create index items_hash on items(content_hash) where status = 'active'")
    conn.execute("create index items_category on items(category)")
    conn.execute("create index items_type on items(memory_type)")
    conn.execute(
        """
        create table categories (
            name text primary key,
            description text,
            created_at text not null,
            updated_at text not null
        )
        """
    )
    # What happened to each item, oldest first: created, seen again, superseded.
    conn.execute(
        """
        create table item_history (
            id integer primary key,
            item_id text not null,
            event text not null,
            content text,
            confidence real,
            session_id text,
            related_id text,
            at text not null
        )
        """
    )
    conn.execute("create index item_history_item on item_history(item_id)")
    # Only active items are indexed; superseded ones keep their row and history.
    conn.execute(
        "create virtual table items_fts using fts5(content, category, content='items', "
        "content_rowid='rowid', tokenize='porter unicode61')"
    )


@migration
def m002_provenance(conn: Any) -> None:
    """Where each fact came from (provider and model of the run that produced it), and what it
    is about (subject, attribute): a newer fact on the same pair supersedes the older one."""
    for column in ("provider", "model", "subject", "attribute"):
        conn.execute(f"alter table items add column {column} text")
    conn.execute("create index items_provider on items(provider)")
    conn.execute("create index items_subject on items(subject, attribute) "
                 "where status = 'active' and subject is not null")


def migrate(db: Database) -> None:
    from .db import APPLICATION_ID  # db imports this module

    conn = db.conn
    create = "create table if not exists _migrations (name text primary key, applied_at text)"
    if db.application_id() != APPLICATION_ID:
        def claim(c: Any) -> None:
            # The table and the mark in one transaction: another process opening the file
            # meanwhile sees either an empty file or a marked one, never a lone _migrations
            # table it would take for another application's database.
            c.execute(create)
            c.execute(f"pragma application_id = {APPLICATION_ID}")

        db.write(claim)
    else:
        conn.execute(create)
    applied = {row[0] for row in conn.execute("select name from _migrations")}
    for name, fn in MIGRATIONS:
        if name in applied:
            continue

        def apply(c: Any, name: str = name, fn: Callable[[Any], None] = fn) -> None:
            # Re-checked inside the write lock: another process may have just applied it.
            if c.execute("select 1 from _migrations where name = ?", (name,)).fetchone():
                return
            fn(c)
            c.execute("insert into _migrations(name, applied_at) values (?, datetime('now'))",
                      (name,))

        db.write(apply)
    if db.application_id() != APPLICATION_ID:
        # New files, and files this plugin wrote before it marked them as its own.
        db.write(lambda c: c.execute(f"pragma application_id = {APPLICATION_ID}"))
