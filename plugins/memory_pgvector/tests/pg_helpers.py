"""Running `sigil` as separate "hosts" for the memory_pgvector tests, each a
:class:`sigil_core.testing.SigilCLI` of its own sharing one database."""

from __future__ import annotations

from pathlib import Path

from sigil_core.testing import SigilCLI

LEAD_TASK = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"


def host(root: Path, name: str, dsn: str | None, schema: str) -> SigilCLI:
    """One "host": its own SIGIL_HOME and working folder, the shared DSN (none: not set)."""
    cli = SigilCLI(root / name, env={"SIGIL_MEMORY_DSN": dsn} if dsn is not None else None)
    # hashing: the vectors these tests write themselves (the installed default is minilm).
    cli.write_config(f"memory:\n  backend: pgvector\n  schema: {schema}\n  embedder: hashing\n")
    return cli


def completed(evs: list[dict], operation: str) -> dict:
    done = [e for e in evs if e["operation"] == operation and e["message"].startswith("Completed")]
    assert done, [e["message"] for e in evs if e["operation"] == operation]
    return done[0]["metadata"]
