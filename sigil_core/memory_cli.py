"""``sigil memory ...`` commands that work on any memory backend (the store protocol).

``migrate`` copies one backend's memories into another's, everything: ids, status, history,
categories and, when both sides use the same embedder, the vectors themselves. Each backend
plugin offers these commands by calling :func:`attach` from ``sigil_register_commands``: they
join the ``memory`` group another plugin registered, or make one.

Only click is imported at module level (this module sits outside :mod:`sigil_core.memory` so
that registering the commands does not import it); stores load inside the commands.
"""

from __future__ import annotations

import sys
from typing import Any

import click

#: Records copied per ``load`` call (one transaction each on the target).
BATCH = 1000


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


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

    from .errors import MemoryBackendError, SigilError, UsageError

    try:
        click.echo(asyncio.run(_migrate(source, target, from_location, to_location)))
    except UsageError as exc:
        _fail(exc.message, 2)
    except MemoryBackendError as exc:
        _fail(f"{exc.message} [{exc.code}]", 2 if exc.code in ("MEMORY_002", "MEMORY_004") else 1)
    except SigilError as exc:
        _fail(f"{exc.message} [{exc.code}]", 1)
    except ValueError as exc:
        _fail(str(exc), 2)


@click.group()
def memory() -> None:
    """Manage Sigil's memory (commands for every backend)."""


def attach(cli: click.Group) -> None:
    """Offer the backend-independent commands in ``sigil memory`` (see the module docstring)."""
    group = cli.commands.get("memory")
    if isinstance(group, click.Group):
        group.add_command(migrate)
    else:
        memory.add_command(migrate)
        cli.add_command(memory)
