"""memory_pgvector with real `sigil` processes: two "hosts" sharing one memory, an unreachable
database, and several processes writing at once."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pg_helpers import LEAD_TASK, completed, host
from sigil_memory_pgvector.backend import PgStore

from sigil_core.memory.embedders import HashingEmbedder


def test_a_run_on_another_host_retrieves_what_the_first_one_extracted(tmp_path, pg_dsn,
                                                                      pg_schema):
    first = host(tmp_path, "host-a", pg_dsn, pg_schema)
    proc = first("orchestrate", LEAD_TASK)
    assert proc.returncode == 0, proc.stderr
    extracted = completed(first.session_jsonl(), "extract_memories")
    assert extracted["memories_new"] >= 1

    async def stored() -> list[str]:
        store = await PgStore.connect(pg_dsn, pg_schema, HashingEmbedder())
        try:
            return [i.content for i in await store.list()]
        finally:
            await store.close()

    contents = asyncio.run(stored())
    assert len(contents) == extracted["memories_new"]

    second = host(tmp_path, "host-b", pg_dsn, pg_schema)
    proc = second("orchestrate", "Qualify this lead: John Smith at Acme Corp")
    assert proc.returncode == 0, proc.stderr
    evs = second.session_jsonl()
    retrieved = completed(evs, "retrieve_context")
    assert retrieved["backend"] == "pgvector" and retrieved["rag_results"] >= 1
    # Every memory in the schema was extracted by the first host before this run started, so
    # what the second host retrieved is the first host's.
    assert retrieved["rag_results"] <= len(contents)
    assert not (second.home / "memory.db").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_database_is_memory_003_naming_the_host_and_the_run_goes_on(tmp_path):
    port = free_port()  # nothing listens there
    dsn = f"postgresql://sigil:s3cret-pw@127.0.0.1:{port}/sigil"
    env = host(tmp_path, "h", dsn, "sigil_memory")
    proc = env("orchestrate", LEAD_TASK)
    assert proc.returncode == 0, proc.stderr
    evs = env.session_jsonl()
    failures = [e for e in evs if e.get("error_info")]
    assert {e["operation"] for e in failures} >= {"retrieve_context", "extract_memories"}
    for e in failures:
        assert e["error_info"]["error_code"] == "MEMORY_003"
        assert f"127.0.0.1:{port}/sigil" in e["error_info"]["error_message"]
    everything = proc.stdout + proc.stderr + json.dumps(evs)
    assert "s3cret-pw" not in everything
    assert any(e["operation"] == "complete_execution" for e in evs)


def test_no_dsn_is_a_usage_error(tmp_path):
    env = host(tmp_path, "h", None, "sigil_memory")
    proc = env("orchestrate", LEAD_TASK)
    assert proc.returncode == 2
    assert "memory.dsn" in proc.stderr and "SIGIL_MEMORY_DSN" in proc.stderr
    assert "Traceback" not in proc.stderr


WRITER = textwrap.dedent("""
    import asyncio, sys
    from sigil_core.memory.embedders import HashingEmbedder
    from sigil_core.model import MemoryItem
    from sigil_memory_pgvector.backend import PgStore

    dsn, schema, worker, count, shared = sys.argv[1:6]
    worker, count = int(worker), int(count)

    def text(i):
        return (f"shared fact {i}: account a{i} renews in month m{i % 12} with plan p{i % 7}"
                if shared == "1" else
                f"worker {worker} fact {i}: lead w{worker}x{i} scored s{i % 97} in region r{i % 13}")

    async def main():
        store = await PgStore.connect(dsn, schema, HashingEmbedder())
        try:
            for start in range(0, count, 100):
                await store.remember_many([MemoryItem(content=text(i), category=f"c{i % 5}")
                                           for i in range(start, min(count, start + 100))])
        finally:
            await store.close()

    asyncio.run(main())
""")


def run_writers(tmp_path: Path, dsn: str, schema: str, count: int, shared: bool) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), dsn, schema, str(w), str(count),
                               "1" if shared else "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for w in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err


async def check_indexes(dsn: str, schema: str, expected: int) -> PgStore:
    store = await PgStore.connect(dsn, schema, HashingEmbedder())
    s = schema
    rows = await store._query(
        f"select count(*), count(distinct id), count(distinct (content_hash, memory_type)), "
        f"count(embedding), (select count(*) from {s}.items where status = 'active' and "
        f"tsv @@ to_tsquery('english', 'fact')) from {s}.items")
    total, ids, hashes, vectors, text_indexed = rows[0]
    assert (total, ids, hashes, vectors, text_indexed) == (expected,) * 5
    history = (await store._query(f"select count(*) from {s}.item_history "
                                  "where event = 'created'"))[0][0]
    assert history == expected
    return store


def test_four_processes_writing_1000_facts_each_store_4000_items(tmp_path, pg_dsn, pg_schema):
    run_writers(tmp_path, pg_dsn, pg_schema, 1000, shared=False)

    async def check() -> None:
        store = await check_indexes(pg_dsn, pg_schema, 4000)
        try:
            for worker, i in ((0, 0), (1, 517), (2, 999), (3, 250)):
                content = (f"worker {worker} fact {i}: lead w{worker}x{i} scored s{i % 97} in "
                           f"region r{i % 13}")
                hits = await store.search(content, k=5)
                assert hits[0].item.content == content
                assert hits[0].vector_rank == 1 and hits[0].text_rank is not None
        finally:
            await store.close()

    asyncio.run(check())


def test_four_processes_writing_the_same_facts_store_each_once(tmp_path, pg_dsn, pg_schema):
    run_writers(tmp_path, pg_dsn, pg_schema, 150, shared=True)

    async def check() -> None:
        store = await check_indexes(pg_dsn, pg_schema, 150)
        try:
            items = await store.list()
            assert sorted(i.times_seen for i in items) == [4] * 150
            seen = (await store._query(f"select count(*) from {pg_schema}.item_history "
                                       "where event = 'seen'"))[0][0]
            assert seen == 450
        finally:
            await store.close()

    asyncio.run(check())


@pytest.mark.parametrize("schema", ["Bad-Name", "x; drop table y"])
def test_a_schema_that_is_not_a_plain_name_is_refused(tmp_path, schema):
    env = host(tmp_path, "h", "postgresql://127.0.0.1/x", "ok")
    env.write_config(
        f"memory:\n  backend: pgvector\n  schema: {json.dumps(schema)}\n")
    proc = env("orchestrate", LEAD_TASK)
    assert proc.returncode == 2 and "memory.schema" in proc.stderr
