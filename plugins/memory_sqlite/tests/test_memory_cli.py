"""`sigil memory ...` and `sigil orchestrate` through the real CLI, in subprocesses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from memory_helpers import LEAD, completed, events


def test_add_search_show_forget_round_trip(memory_cli):
    r = memory_cli("memory", "add", "Acme Corp has a budget of 50000 dollars", "-c", "acme")
    assert r.returncode == 0, r.stderr
    old_id = r.stdout.split()[-1]
    r = memory_cli("memory", "add", "Acme Corp has a budget of 80000 dollars")
    assert "supersedes " + old_id in r.stdout
    new_id = r.stdout.split()[1]
    r = memory_cli("memory", "search", "Acme budget", "--json")
    hits = [json.loads(line) for line in r.stdout.splitlines()]
    assert [h["id"] for h in hits] == [new_id]
    r = memory_cli("memory", "show", old_id)
    assert "status: superseded (by " + new_id + ")" in r.stdout
    r = memory_cli("memory", "list", "--all")
    assert len(r.stdout.splitlines()) == 2
    r = memory_cli("memory", "forget", new_id)
    assert r.returncode == 0 and "forgot 1 memory" in r.stdout
    r = memory_cli("memory", "show", new_id)
    assert r.returncode == 2 and "no memory with id" in r.stderr and "Traceback" not in r.stderr


def test_export_import_and_stats(memory_cli, tmp_path):
    for text in ("Globex ordered 40 tonnes of steel", "Initech renews in March"):
        assert memory_cli("memory", "add", text).returncode == 0
    dump = tmp_path / "dump.jsonl"
    assert memory_cli("memory", "export", str(dump)).returncode == 0
    assert len(dump.read_text().splitlines()) == 2
    other = tmp_path / "other.db"
    r = memory_cli("memory", "--db", str(other), "import", str(dump))
    assert "2 new" in r.stdout, r.stderr
    r = memory_cli("memory", "--db", str(other), "import", str(dump))
    assert "0 new, 2 merged" in r.stdout
    r = memory_cli("memory", "--db", str(other), "stats", "--json")
    data = json.loads(r.stdout)
    assert data["active"] == 2 and data["embedder"] == "hashing" and data["vectors"] == 2


@pytest.mark.parametrize("args, needle", [
    (("memory", "add", "x", "--type", "opinion"), "opinion"),
    (("memory", "add", "x", "--confidence", "2"), "confidence"),
    (("memory", "add", "   "), "CONTENT is empty"),
    (("memory", "forget", "mem_nope"), "no memory with id"),
])
def test_bad_input_exits_2_with_one_line(memory_cli, args, needle):
    r = memory_cli(*args)
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_bad_import_line_names_the_line(memory_cli, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"content": "fine"}\n{"content": "x", "memory_type": "rumour"}\n')
    r = memory_cli("memory", "import", str(bad))
    assert r.returncode == 2 and "line 2" in r.stderr and "rumour" in r.stderr


def test_corrupted_database_cli_error_and_file_kept(memory_cli):
    memory_cli.home.mkdir(exist_ok=True)
    db = memory_cli.home / "memory.db"
    db.write_bytes(b"garbage" * 1000)
    r = memory_cli("memory", "list")
    assert r.returncode == 1 and "MEMORY_003" in r.stderr and "Traceback" not in r.stderr
    assert db.read_bytes() == b"garbage" * 1000


def test_unwritable_path_is_clear(memory_cli, tmp_path):
    (tmp_path / "plainfile").write_text("x")
    r = memory_cli("memory", "--db", str(tmp_path / "plainfile" / "m.db"), "add", "a fact")
    assert r.returncode == 2 and "writable" in r.stderr and "Traceback" not in r.stderr


def test_second_run_retrieves_what_the_first_extracted(memory_cli):
    r = memory_cli("orchestrate", LEAD, "-s", "first")
    assert r.returncode == 0, r.stderr
    first = events(memory_cli.cwd, "first")
    ext = completed(first, "extract_memories")[0]["metadata"]
    assert ext["facts_extracted"] >= 1 and ext["memories_new"] == ext["facts_extracted"]
    ret = completed(first, "retrieve_context")[0]["metadata"]
    assert ret["rag_results"] == 0

    r = memory_cli("orchestrate", LEAD, "-s", "second")
    assert r.returncode == 0, r.stderr
    second = events(memory_cli.cwd, "second")
    ret = completed(second, "retrieve_context")[0]["metadata"]
    assert ret["retrieval_method"] == "hybrid"
    assert ret["rag_results"] == ext["facts_extracted"] == ret["filtered_results"]
    assert ret["categories_loaded"] >= 1
    # same task twice: nothing duplicated, everything seen twice
    ext2 = completed(second, "extract_memories")[0]["metadata"]
    assert ext2["memories_new"] == 0 and ext2["memories_merged"] == ext["facts_extracted"]
    listed = memory_cli("memory", "list", "--json").stdout.splitlines()
    assert len(listed) == ext["facts_extracted"]
    assert all(json.loads(line)["times_seen"] == 2 for line in listed)


def test_more_than_ten_results_are_filtered_by_the_llm(memory_cli, tmp_path):
    lines = [json.dumps({"content": f"Acme Corp enterprise plan note {i}: contact {name}",
                         "category": "accounts"})
             for i, name in enumerate("abcdefghijklmnopqrstuvwxy")]
    src = tmp_path / "many.jsonl"
    src.write_text("\n".join(lines) + "\n")
    assert memory_cli("memory", "import", str(src)).returncode == 0
    r = memory_cli("orchestrate", LEAD, "-s", "filtered")
    assert r.returncode == 0, r.stderr
    evs = events(memory_cli.cwd, "filtered")
    ret = completed(evs, "retrieve_context")[0]
    assert ret["metadata"]["rag_results"] == 20
    assert ret["metadata"]["filtered_results"] == 10
    assert ret["metadata"]["llm_filtered"] is True
    assert ret["tokens_used"]["total_tokens"] > 0  # the filter call is booked to retrieval


def test_corrupted_database_run_continues_without_memory(memory_cli):
    memory_cli.home.mkdir(exist_ok=True)
    db = memory_cli.home / "memory.db"
    db.write_bytes(b"not sqlite" * 500)
    r = memory_cli("orchestrate", LEAD, "-s", "broken")
    assert r.returncode == 0, r.stderr
    evs = events(memory_cli.cwd, "broken")
    failed = [e for e in evs if e["operation"] == "retrieve_context"
              and e.get("error_info", {}).get("error_code") == "MEMORY_003"]
    assert failed, [e["message"] for e in evs]
    assert db.read_bytes() == b"not sqlite" * 500
