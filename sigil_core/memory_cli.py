"""``sigil memory ...``: inspect and manage memory on any backend (the store protocol of
:mod:`sigil_core.memory`): add, search, list, show, forget, stats, export, import, reindex, and
``migrate`` from one backend to another.

Every command works on the configured backend (``memory.backend``, or ``--backend``), at its
configured place (``--db`` overrides: a file for sqlite, a DSN for pgvector). Read-only commands
create nothing where there is no store yet. Backend plugins offer the group by calling
:func:`attach` from ``sigil_register_commands``.

Only click is imported at module level (this module sits outside :mod:`sigil_core.memory` so
that registering the commands does not import it); stores load inside the commands.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import click

from .constants import MEMORY_TYPES

TYPES = MEMORY_TYPES
#: Records copied per ``load`` call (one transaction each on the target).
BATCH = 1000


async def _migrate(source: str, target: str, from_location: str | None,
                   to_location: str | None) -> str:
    from .config import load_config
    from .memory import open_store
    from .plugins import PluginHost

    config = load_config()
    host = PluginHost().load()
    src = await open_store(config, host, backend=source, location=from_location,
                           check_embedder=False)
    try:
        dst = await open_store(config, host, backend=target, location=to_location)
        try:
            if src.location == dst.location:
                raise ValueError(f"source and target are the same store ({src.location})")
            same = (src.embedder.name == dst.embedder.name and
                    int(src.embedder.dimensions) == int(dst.embedder.dimensions))
            read = copied = superseded = 0
            batch: list[Any] = []
            async for record in src.records():
                read += 1
                if not same:
                    record.vector = None  # another embedder's space: the target re-embeds
                batch.append(record)
                if len(batch) >= BATCH:
                    copied += await dst.load(batch)
                    superseded += sum(1 for r in batch if r.status == "superseded")
                    batch = []
            if batch:
                copied += await dst.load(batch)
                superseded += sum(1 for r in batch if r.status == "superseded")
            vectors = ("vectors copied" if same else
                       f"vectors re-embedded with {dst.embedder.name} (source used "
                       f"{src.embedder.name})")
            return (f"copied {copied} of {read} memories ({superseded} superseded, with history) "
                    f"from {source} ({src.location}) to {target} ({dst.location}); {vectors}"
                    + (f"; {read - copied} already there" if read > copied else ""))
        finally:
            await dst.close()
    finally:
        await src.close()


@click.command()
@click.option("--from", "source", required=True, metavar="BACKEND",
              help="Backend to copy from (e.g. sqlite).")
@click.option("--to", "target", required=True, metavar="BACKEND",
              help="Backend to copy into (e.g. pgvector).")
@click.option("--from-location", default=None, metavar="PATH|DSN",
              help="Source store (default: the configured path or DSN of that backend).")
@click.option("--to-location", default=None, metavar="PATH|DSN",
              help="Target store (default: the configured path or DSN of that backend).")
def migrate(source: str, target: str, from_location: str | None, to_location: str | None) -> None:
    """Copy every memory from one backend to another: ids, superseded items and history,
    categories, and the vectors when both use the same embedder. Items already in the target
    (same id, or the same fact active) are left as they are, so running it twice is safe."""
    import asyncio

    with errors():
        click.echo(asyncio.run(_migrate(source, target, from_location, to_location)))




# ----------------------------------------------------------------------------- plumbing


def fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


@contextmanager
def errors() -> Iterator[None]:
    """Sigil errors become one line on stderr: exit 2 for what the user can fix, else 1."""
    from .errors import MemoryBackendError, SigilError, UsageError

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


def on_store(ctx: click.Context, work: Callable[[Any], Awaitable[Any]], *,
             check_embedder: bool = True, embedder: str | None = None,
             existing: bool = False) -> Any:
    """Open the store the command works on, run ``work(store)``, close it; the result.

    ``existing``: for commands that only read (or delete): ``work(None)`` when the backend says
    there is no store there yet, rather than creating one as a side effect."""
    import asyncio

    from .config import load_config
    from .memory import MemorySettings, open_store
    from .plugins import PluginHost

    async def main() -> Any:
        config = load_config()
        host = PluginHost().load()
        backend = ctx.obj.get("backend") or MemorySettings.from_config(config).backend
        if existing:
            impl = host.registry("memory_backends").get(backend)
            exists = getattr(impl, "exists", None)
            if impl is not None and exists is not None and not exists(config, ctx.obj.get("db")):
                ctx.obj["where"] = impl.where(config, ctx.obj.get("db"))
                return await work(None)
        store = await open_store(config, host, backend=backend, location=ctx.obj.get("db"),
                                 check_embedder=check_embedder, embedder=embedder)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(main())


def say_no_store(ctx: click.Context) -> None:
    click.echo(f"no memory database at {ctx.obj.get('where')} yet: a run or `sigil memory add` "
               "creates it", err=True)


def item_line(item: Any) -> str:
    cat = f" [{item.category}]" if item.category else ""
    source = f" from={item.provider}" if item.provider else ""
    return (f"{item.id}  {item.memory_type:<10} conf={item.confidence:.2f} "
            f"seen={item.times_seen}{source}{cat}  {item.content}")


def provenance(item: Any) -> str:
    """Who made a memory, for `show`: the offline model's are marked as placeholders."""
    from .memory.consolidation import OFFLINE_PROVIDER, USER_PROVIDER

    if item.provider == OFFLINE_PROVIDER:
        return (f"the offline model ({item.model or 'offline'}): a placeholder, not retrieved by "
                "runs with a real provider (memory.include_offline)")
    if item.provider == USER_PROVIDER:
        return "added by hand (`sigil memory add`)"
    if item.provider:
        return f"{item.provider}" + (f" ({item.model})" if item.model else "")
    return "unknown (not recorded by this backend, or stored before provenance was)"


def item_dict(item: Any) -> dict[str, Any]:
    from .model import unstructure

    return cast("dict[str, Any]", unstructure(item))


# ----------------------------------------------------------------------------- commands


@click.group()
@click.option("--backend", default=None, metavar="NAME",
              help="Memory backend (default: memory.backend, SIGIL_MEMORY_BACKEND, else sqlite).")
@click.option("--db", "db", default=None, metavar="PATH|DSN",
              help="The store: a file for sqlite (default: memory.path, SIGIL_MEMORY_DB or "
                   "<config dir>/memory.db), a DSN for pgvector (default: memory.dsn or "
                   "SIGIL_MEMORY_DSN).")
@click.pass_context
def memory(ctx: click.Context, backend: str | None, db: str | None) -> None:
    """Inspect and manage Sigil's memory, on any memory backend."""
    ctx.ensure_object(dict)
    ctx.obj.update(backend=backend, db=db)


memory.add_command(migrate)


@memory.command()
@click.argument("content")
@click.option("--type", "memory_type", type=click.Choice(TYPES), default="fact", show_default=True,
              help="What kind of memory it is.")
@click.option("--category", "-c", default=None, help="Category, e.g. the subject.")
@click.option("--confidence", type=click.FloatRange(0, 1), default=0.8, show_default=True,
              help="How sure the memory is, 0 to 1.")
@click.option("--subject", default=None,
              help="Who or what it is about, e.g. 'John Smith' (with --attribute: a newer memory "
                   "on the same pair supersedes the older one).")
@click.option("--attribute", default=None,
              help="What it states about the subject, e.g. 'lead status'.")
@click.pass_context
def add(ctx: click.Context, content: str, memory_type: str, category: str | None,
        confidence: float, subject: str | None, attribute: str | None) -> None:
    """Remember CONTENT (consolidated with what is already known)."""
    with errors():
        if not content.strip():
            fail("CONTENT is empty; give the text to remember")
        from .memory.consolidation import check_size
        from .model import MemoryItem

        check_size(" ".join(content.split()))  # before the store is opened (or created)
        from .memory.consolidation import USER_PROVIDER

        item = MemoryItem(content=content, memory_type=memory_type, category=category,
                          confidence=confidence, provider=USER_PROVIDER, subject=subject,
                          attribute=attribute)

        async def work(store: Any) -> Any:
            return (await store.remember_many([item]))[0]

        outcome = on_store(ctx, work)
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
    """Hybrid search (vector + full text, fused)."""
    with errors():
        async def work(store: Any) -> Any:
            return None if store is None else await store.search(query, k=k)

        hits = on_store(ctx, work, existing=True)
        if hits is None:
            say_no_store(ctx)
            return
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
        async def work(store: Any) -> Any:
            if store is None:
                return None
            return await store.list(memory_type=memory_type, category=category,
                                    include_superseded=include_all, limit=limit)

        items = on_store(ctx, work, check_embedder=False, existing=True)
        if items is None:
            say_no_store(ctx)
            return
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
        async def work(store: Any) -> Any:
            item = await store.get(item_id) if store is not None else None
            if item is None:
                return None
            return item, await store.status(item_id), await store.history(item_id)

        found = on_store(ctx, work, check_embedder=False, existing=True)
        if found is None:
            fail(f"no memory with id {item_id!r}; `sigil memory list` shows the ids")
        item, (status, superseded_by), history = found
        if as_json:
            d = item_dict(item)
            d.update(status=status, superseded_by=superseded_by, history=history)
            click.echo(json.dumps(d, ensure_ascii=False, indent=2))
            return
        click.echo(item_line(item))
        click.echo(f"status: {status}" + (f" (by {superseded_by})" if superseded_by else ""))
        click.echo(f"made by: {provenance(item)}")
        if item.subject or item.attribute:
            click.echo(f"about: {item.subject or '-'} / {item.attribute or '-'}")
        click.echo(f"source session: {item.source_session_id or '-'}")
        click.echo(f"created: {item.created_at}  updated: {item.updated_at}")
        click.echo("history:")
        for h in history:
            extra = f" {h['related_id']}" if h.get("related_id") else ""
            click.echo(f"  {h['at']}  {h['event']}{extra}: {h.get('content', '')}")


@memory.command()
@click.argument("item_ids", nargs=-1)
@click.option("--provider", default=None,
              help="Forget every memory made by this provider, e.g. 'offline' (the offline "
                   "model's placeholders).")
@click.pass_context
def forget(ctx: click.Context, item_ids: tuple[str, ...], provider: str | None) -> None:
    """Delete memories (with their history) by id, or all of one provider's."""
    if not item_ids and not provider:
        fail("give the ids of the memories to forget, or --provider NAME")
    if item_ids and provider:
        fail("give either ids or --provider, not both")
    if provider:
        with errors():
            async def forget_all(store: Any) -> int:
                if store is None:
                    return 0
                items = await store.list(include_superseded=True)
                mine = [i.id for i in items if i.provider == provider]
                for item_id in mine:
                    await store.forget(item_id)
                return len(mine)

            n = on_store(ctx, forget_all, check_embedder=False, existing=True)
            click.echo(f"forgot {n} memor{'y' if n == 1 else 'ies'} made by {provider}")
        return
    with errors():
        async def work(store: Any) -> str | None:
            for item_id in item_ids:
                if store is None or await store.get(item_id) is None:
                    return item_id
            for item_id in item_ids:
                await store.forget(item_id)
            return None

        missing = on_store(ctx, work, check_embedder=False, existing=True)
        if missing:
            fail(f"no memory with id {missing!r}; `sigil memory list` shows the ids")
        click.echo(f"forgot {len(item_ids)} memor{'y' if len(item_ids) == 1 else 'ies'}")


@memory.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Counts by type and category, where the store is, the embedder and the driver."""
    with errors():
        async def work(store: Any) -> Any:
            return None if store is None else await store.stats()

        data = on_store(ctx, work, check_embedder=False, existing=True)
        if data is None:
            if as_json:
                click.echo(json.dumps({"path": str(ctx.obj.get("where")), "exists": False}))
            else:
                say_no_store(ctx)
            return
        if as_json:
            click.echo(json.dumps(data, indent=2))
            return
        from .tables import print_table, table

        click.echo(f"database:   {data.get('location', data.get('path'))} "
                   f"({data['size_bytes'] / 1e6:.1f} MB)")
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


def export_dict(record: Any) -> dict[str, Any]:
    """One line of ``export``: the item's fields, status, superseded_by, history."""
    d = {k: v for k, v in item_dict(record.item).items() if v is not None}
    d.pop("score", None)
    d["status"] = record.status
    if record.superseded_by:
        d["superseded_by"] = record.superseded_by
    d["history"] = record.history
    return d


@memory.command()
@click.argument("output", type=click.File("w", encoding="utf-8"), default="-")
@click.pass_context
def export(ctx: click.Context, output: Any) -> None:
    """Write every memory (with history) as JSON lines to OUTPUT (default stdout)."""
    with errors():
        async def work(store: Any) -> int | None:
            if store is None:
                return None
            n = 0
            async for record in store.records():
                output.write(json.dumps(export_dict(record), ensure_ascii=False) + "\n")
                n += 1
            return n

        n = on_store(ctx, work, check_embedder=False, existing=True)
        if n is None:
            say_no_store(ctx)
            return
        if output is not sys.stdout:
            click.echo(f"exported {n} memories", err=True)


@memory.command(name="import")
@click.argument("source", type=click.File("r", encoding="utf-8"))
@click.pass_context
def import_(ctx: click.Context, source: Any) -> None:
    """Read memories from JSON lines (as written by export), consolidating duplicates."""
    from .memory.consolidation import item_from_dict

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
        async def work(store: Any) -> dict[str, int]:
            counts = {"new": 0, "merged": 0, "superseded": 0}
            for start in range(0, len(items), 500):
                for o in await store.remember_many(items[start:start + 500]):
                    counts[o.action] += 1
            return counts

        counts = on_store(ctx, work)
    click.echo(f"imported {len(items)} memories: {counts['new']} new, {counts['merged']} merged, "
               f"{counts['superseded']} superseding")


@memory.command()
@click.option("--embedder", default=None,
              help="Embedder to use (default: memory.embedder, else the best installed).")
@click.pass_context
def reindex(ctx: click.Context, embedder: str | None) -> None:
    """Re-embed every memory with the configured (or given) embedder."""
    with errors():
        async def work(store: Any) -> tuple[Any, int]:
            target = store.embedder
            return target, await store.reindex(target)

        target, n = on_store(ctx, work, check_embedder=False, embedder=embedder)
        click.echo(f"reindexed {n} memories with {target.name} ({target.dimensions} dims)")


def attach(cli: click.Group) -> None:
    """Offer ``sigil memory`` (every backend plugin calls this; adding it twice is harmless)."""
    cli.add_command(memory)
