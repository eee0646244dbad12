"""``sigil memory ...``: inspect and manage the memory database from the command line.

Only click is imported at module level; the store (numpy, sqlite-vec) loads inside commands.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import click

TYPES = ("fact", "preference", "event", "skill", "pattern")


def fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


@contextmanager
def errors() -> Iterator[None]:
    """Sigil errors become one line on stderr: exit 2 for what the user can fix, else 1."""
    from sigil_core.errors import MemoryBackendError, SigilError, UsageError

    try:
        yield
    except UsageError as exc:
        fail(exc.message, 2)
    except MemoryBackendError as exc:
        fixable = exc.code in ("MEMORY_002", "MEMORY_004")
        fail(f"{exc.message} [{exc.code}]", 2 if fixable else 1)
    except SigilError as exc:
        fail(f"{exc.message} [{exc.code}]", 1)
    except ValueError as exc:
        fail(str(exc), 2)


def open_from(ctx: click.Context, *, check_embedder: bool = True, embedder: str | None = None,
              existing: bool = False) -> Any:
    """The store the command works on. ``existing``: for commands that only read (or delete),
    None when there is no database file yet, rather than creating one as a side effect."""
    from sigil_core.config import load_config
    from sigil_core.plugins import PluginHost

    from .settings import open_store

    config = load_config()
    path = db_path(ctx, config)
    if existing and not path.exists():
        return None
    embedders = PluginHost().load().registry("embedders")
    return open_store(config, embedders, check_embedder=check_embedder, path=path,
                      embedder=embedder)


def db_path(ctx: click.Context, config: Any = None) -> Any:
    from pathlib import Path

    from sigil_core.config import load_config

    from .store import default_path

    if ctx.obj.get("db"):
        return Path(ctx.obj["db"]).expanduser()
    return default_path(config if config is not None else load_config())


def say_no_database(ctx: click.Context) -> None:
    click.echo(f"no memory database at {db_path(ctx)} yet: a run or `sigil memory add` creates "
               "it", err=True)


@contextmanager
def opened(store: Any) -> Iterator[Any]:
    """``with`` for a store that may be None (no database yet)."""
    try:
        yield store
    finally:
        if store is not None:
            store.close()


def item_line(item: Any) -> str:
    cat = f" [{item.category}]" if item.category else ""
    return (f"{item.id}  {item.memory_type:<10} conf={item.confidence:.2f} "
            f"seen={item.times_seen}{cat}  {item.content}")


def item_dict(item: Any) -> dict[str, Any]:
    from sigil_core.model import unstructure

    return unstructure(item)


@click.group()
@click.option("--db", "db", type=click.Path(dir_okay=False), default=None,
              help="Memory database file (default: memory.path, SIGIL_MEMORY_DB or "
                   "<config dir>/memory.db).")
@click.pass_context
def memory(ctx: click.Context, db: str | None) -> None:
    """Inspect and manage Sigil's memory (SQLite: vectors + full text)."""
    ctx.ensure_object(dict)
    ctx.obj["db"] = db


@memory.command()
@click.argument("content")
@click.option("--type", "memory_type", type=click.Choice(TYPES), default="fact", show_default=True,
              help="What kind of memory it is.")
@click.option("--category", "-c", default=None, help="Category, e.g. the subject.")
@click.option("--confidence", type=click.FloatRange(0, 1), default=0.8, show_default=True,
              help="How sure the memory is, 0 to 1.")
@click.pass_context
def add(ctx: click.Context, content: str, memory_type: str, category: str | None,
        confidence: float) -> None:
    """Remember CONTENT (consolidated with what is already known)."""
    from sigil_core.model import MemoryItem

    with errors():
        if not content.strip():
            fail("CONTENT is empty; give the text to remember")
        from sigil_core.memory.consolidation import check_size

        check_size(" ".join(content.split()))  # before the database is opened (or created)
        with open_from(ctx) as store:
            outcome = store.remember(MemoryItem(content=content, memory_type=memory_type,
                                                category=category, confidence=confidence))
        verb = {"new": "added", "merged": "merged into", "superseded": "added"}[outcome.action]
        click.echo(f"{verb} {outcome.item.id}" + (
            f" (supersedes {outcome.previous.id})" if outcome.previous else ""))


@memory.command()
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many memories to return at most.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def search(ctx: click.Context, query: str, k: int, as_json: bool) -> None:
    """Hybrid search (vector + full text, fused by rank)."""
    with errors():
        with opened(open_from(ctx, existing=True)) as store:
            if store is None:
                say_no_database(ctx)
                return
            hits = store.search(query, k=k)
        for hit in hits:
            if as_json:
                d = item_dict(hit.item)
                d.update(vector_rank=hit.vector_rank, text_rank=hit.text_rank,
                         similarity=None if hit.similarity is None else round(hit.similarity, 4))
                click.echo(json.dumps(d, ensure_ascii=False))
            else:
                click.echo(f"{hit.score:.4f}  {item_line(hit.item)}")
        if not hits and not as_json:
            click.echo("no memories match", err=True)


@memory.command(name="list")
@click.option("--type", "memory_type", type=click.Choice(TYPES), default=None,
              help="Only memories of this type.")
@click.option("--category", "-c", default=None, help="Only memories in this category.")
@click.option("--all", "include_all", is_flag=True, help="Include superseded memories.")
@click.option("--limit", "-n", type=click.IntRange(1), default=None,
              help="At most this many (default: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_(ctx: click.Context, memory_type: str | None, category: str | None, include_all: bool,
          limit: int | None, as_json: bool) -> None:
    """List memories, most recently updated first."""
    with errors():
        with opened(open_from(ctx, check_embedder=False, existing=True)) as store:
            if store is None:
                say_no_database(ctx)
                return
            items = store.list(memory_type=memory_type, category=category,
                               include_superseded=include_all, limit=limit)
        for item in items:
            click.echo(json.dumps(item_dict(item), ensure_ascii=False) if as_json
                       else item_line(item))


@memory.command()
@click.argument("item_id")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def show(ctx: click.Context, item_id: str, as_json: bool) -> None:
    """Show one memory and its history (what it superseded, when it was seen again)."""
    with errors():
        with opened(open_from(ctx, check_embedder=False, existing=True)) as store:
            item = store.get(item_id) if store is not None else None
            if item is None:
                fail(f"no memory with id {item_id!r}; `sigil memory list` shows the ids")
            status, superseded_by = store.status(item_id)
            history = store.history(item_id)
        if as_json:
            d = item_dict(item)
            d.update(status=status, superseded_by=superseded_by, history=history)
            click.echo(json.dumps(d, ensure_ascii=False, indent=2))
            return
        click.echo(item_line(item))
        click.echo(f"status: {status}" + (f" (by {superseded_by})" if superseded_by else ""))
        click.echo(f"source session: {item.source_session_id or '-'}")
        click.echo(f"created: {item.created_at}  updated: {item.updated_at}")
        click.echo("history:")
        for h in history:
            extra = f" {h['related_id']}" if h.get("related_id") else ""
            click.echo(f"  {h['at']}  {h['event']}{extra}: {h.get('content', '')}")


@memory.command()
@click.argument("item_ids", nargs=-1, required=True)
@click.pass_context
def forget(ctx: click.Context, item_ids: tuple[str, ...]) -> None:
    """Delete memories (with their history) by id."""
    with errors():
        with opened(open_from(ctx, check_embedder=False, existing=True)) as store:
            missing = [i for i in item_ids if store is None or store.get(i) is None]
            if missing:
                fail(f"no memory with id {missing[0]!r}; `sigil memory list` shows the ids")
            for item_id in item_ids:
                store.forget(item_id)
        click.echo(f"forgot {len(item_ids)} memor{'y' if len(item_ids) == 1 else 'ies'}")


@memory.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Counts by type and category, the file, the embedder and the SQLite driver."""
    from .db import driver_description

    with errors():
        with opened(open_from(ctx, check_embedder=False, existing=True)) as store:
            if store is None:
                if as_json:
                    click.echo(json.dumps({"path": str(db_path(ctx)), "exists": False}))
                else:
                    say_no_database(ctx)
                return
            data = store.stats()
        data["driver"] = driver_description()
        if as_json:
            click.echo(json.dumps(data, indent=2))
            return
        from sigil_core.tables import print_table, table

        click.echo(f"database:   {data['path']} ({data['size_bytes'] / 1e6:.1f} MB)")
        click.echo(f"memories:   {data['active']} active, {data['superseded']} superseded")
        click.echo(f"embedder:   {data['embedder']} ({data['dimensions']} dims), "
                   f"{data['vectors']} vectors")
        click.echo(f"driver:     {data['driver']}")
        counts = table("type / category", "memories", right=(1,))
        for kind, n in data["by_type"].items():
            counts.add_row(f"type {kind}", f"{n:,}")
        for name, n in data["categories"].items():
            counts.add_row(f"category {name}", f"{n:,}")
        print_table(counts)


@memory.command()
@click.argument("output", type=click.File("w", encoding="utf-8"), default="-")
@click.pass_context
def export(ctx: click.Context, output: Any) -> None:
    """Write every memory (with history) as JSON lines to OUTPUT (default stdout)."""
    with errors():
        with opened(open_from(ctx, check_embedder=False, existing=True)) as store:
            if store is None:
                say_no_database(ctx)
                return
            n = 0
            for record in store.export():
                output.write(json.dumps(record, ensure_ascii=False) + "\n")
                n += 1
        if output is not sys.stdout:
            click.echo(f"exported {n} memories", err=True)


@memory.command(name="import")
@click.argument("source", type=click.File("r", encoding="utf-8"))
@click.pass_context
def import_(ctx: click.Context, source: Any) -> None:
    """Read memories from JSON lines (as written by export), consolidating duplicates."""
    from .store import item_from_dict

    name = getattr(source, "name", "input")
    items = []
    for n, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            fail(f"{name}, line {n}: not valid JSON ({exc.msg}); expected one memory per line")
        if isinstance(data, dict) and data.get("status") == "superseded":
            continue  # history of the exporting store: its successor carries the fact now
        with errors():
            items.append(item_from_dict(data, f"{name}, line {n}"))
    with errors():
        with open_from(ctx) as store:
            counts = {"new": 0, "merged": 0, "superseded": 0}
            for start in range(0, len(items), 500):
                for o in store.remember_many(items[start:start + 500]):
                    counts[o.action] += 1
    click.echo(f"imported {len(items)} memories: {counts['new']} new, {counts['merged']} merged, "
               f"{counts['superseded']} superseding")


@memory.command()
@click.option("--embedder", default=None,
              help="Embedder to use (default: memory.embedder, else the best installed).")
@click.pass_context
def reindex(ctx: click.Context, embedder: str | None) -> None:
    """Re-embed every memory with the configured (or given) embedder."""
    with errors():
        with open_from(ctx, check_embedder=False, embedder=embedder) as store:
            target = store.embedder
            n = store.reindex(target)
        click.echo(f"reindexed {n} memories with {target.name} ({target.dimensions} dims)")
