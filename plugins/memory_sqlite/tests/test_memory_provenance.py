"""Where each memory came from (issue 12): provider and model recorded, the offline model's
memories kept out of runs with a real provider, shown as such, forgotten in one go; a newer fact
about the same subject and attribute supersedes the older one.

End to end through the real CLI: offline runs, then runs on the official Anthropic SDK against
the test Messages-API server (sigil_provider_anthropic.testing.server) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from sigil_memory_sqlite.embedders import HashingEmbedder
from sigil_memory_sqlite.store import MemoryStore

from sigil_core import MemoryItem
from sigil_core.testing import LEAD_ANSWERS

server_mod = pytest.importorskip("sigil_provider_anthropic.testing.server")

sys.path.insert(0, str(Path(__file__).parent))
from memory_helpers import completed

RESEARCH = "Research the market for electric cargo bikes in Germany"
LEAD = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"
HOT = {"content": "John Smith at Acme Corp is a hot lead with score 75", "type": "fact",
       "confidence": 0.9, "category": "acme", "subject": "John Smith",
       "attribute": "lead status"}
#: The research contract's deliverables, with the facts the final call was asked to list.
RESEARCH_ANSWER = {
    "summary": "Electric cargo bikes in Germany: a growing market led by family and courier use",
    "sources": ["test server"], "key_findings": ["growing", "family use", "courier use"],
    "facts_to_remember": [HOT]}
WARM = {"content": "John Smith was requalified: warm, 49 points after the budget freeze",
        "type": "fact", "confidence": 0.9, "category": "acme", "subject": "john smith",
        "attribute": "Lead status"}


class Sigil:
    """`sigil` in a subprocess: one SIGIL_HOME, a fresh working folder per session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        keep = {"memory_sqlite", "anthropic"}
        others = {ep.name for ep in entry_points(group="sigil")} - keep
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SIGIL_", "ANTHROPIC_"))}
        self.env.update(SIGIL_HOME=str(self.home), NO_COLOR="1", SIGIL_WORKER_AUTO_START="0",
                        SIGIL_DISABLE_PLUGINS=",".join(sorted(others)))

    def __call__(self, *args: str, url: str | None = None) -> subprocess.CompletedProcess:
        env = dict(self.env)
        if url:
            env.update(ANTHROPIC_API_KEY="sk-ant-test-key", ANTHROPIC_BASE_URL=url)
        return subprocess.run([sys.executable, "-m", "sigil_core", *args], cwd=self.root,
                              env=env, capture_output=True, text=True, timeout=180, check=False)

    def events(self, session: str) -> list[dict]:
        path = self.root / "outputs" / "sessions" / f"{session}.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]

    def memories(self, *args: str) -> list[dict]:
        r = self("memory", "list", "--json", *args)
        assert r.returncode == 0, r.stderr
        return [json.loads(x) for x in r.stdout.splitlines()]


@pytest.fixture
def sigil(tmp_path):
    return Sigil(tmp_path)


class RecordingServer(server_mod.MessagesServer):
    """The test server, keeping every request body it answered (to read the prompts)."""

    def answer(self, body, bad=False):
        self.bodies.append(json.dumps(body, ensure_ascii=False))
        return super().answer(body, bad)

    def prompts(self, since: int = 0) -> str:
        return "\n".join(self.bodies[since:])


@pytest.fixture
def server():
    answers = json.loads(LEAD_ANSWERS.read_text())
    options = server_mod.ServerOptions(min_cache_tokens=0, retry_after_s=0.01, answers=answers)
    RecordingServer.bodies = []
    with RecordingServer(options) as srv:
        srv.bodies = []
        yield srv


def test_offline_memories_are_marked_and_not_retrieved_by_a_real_provider(sigil, server):
    # The lead example's scripted contract answer does not fit a research task: schema instances.
    server.options.answers.pop("reason_answer")
    r = sigil("orchestrate", RESEARCH, "-s", "offline1")
    assert r.returncode == 0, r.stderr
    offline = sigil.memories()
    assert offline and all(m["provider"] == "offline" for m in offline), offline
    assert all(m["model"] for m in offline)
    listed = sigil("memory", "list").stdout
    assert all("from=offline" in line for line in listed.splitlines())
    shown = sigil("memory", "show", offline[0]["id"]).stdout
    assert "made by: the offline model" in shown and "not retrieved by runs with a real" in shown
    found = sigil("memory", "search", "electric cargo bikes").stdout
    assert "from=offline" in found

    # The same task again, offline: the offline model's memories are retrieved (as before).
    r = sigil("orchestrate", RESEARCH, "-s", "offline2")
    assert r.returncode == 0, r.stderr
    ret = completed(sigil.events("offline2"), "retrieve_context")[0]["metadata"]
    assert ret["rag_results"] >= 1

    # A run with a real provider (the SDK against the test server) does not retrieve them.
    # The report's final call also lists the facts to remember (no extraction call after it).
    server.options.answers["reason_answer"] = RESEARCH_ANSWER
    server.options.answers["extract_answer"] = {"facts": [HOT]}
    r = sigil("orchestrate", RESEARCH, "-s", "real1", url=server.url)
    assert r.returncode == 0, r.stderr
    ret = completed(sigil.events("real1"), "retrieve_context")[0]["metadata"]
    assert ret["rag_results"] == 0 and ret["offline_excluded"] >= 1
    prompts = server.prompts()
    assert "Research the market" in prompts
    assert not any(m["content"] in prompts for m in offline)
    # What it learned carries its provider and model.
    real = [m for m in sigil.memories() if m["provider"] != "offline"]
    assert [(m["provider"], m["content"]) for m in real] == [("anthropic", HOT["content"])]
    assert real[0]["model"] and "claude" in real[0]["model"]

    # Unless the config says so.
    (sigil.home / "config.yaml").write_text("memory:\n  include_offline: true\n")
    r = sigil("orchestrate", RESEARCH, "-s", "real2", url=server.url)
    assert r.returncode == 0, r.stderr
    ret = completed(sigil.events("real2"), "retrieve_context")[0]["metadata"]
    assert ret["rag_results"] >= 1 and "offline_excluded" not in ret

    # forget --provider offline removes them in one go, and only them.
    r = sigil("memory", "forget", "--provider", "offline")
    assert r.returncode == 0 and f"forgot {len(offline)} memor" in r.stdout, r.stdout
    assert [m["provider"] for m in sigil.memories("--all")] == ["anthropic"]


def test_a_contradicting_fact_supersedes_with_history(sigil, server):
    server.options.answers["extract_answer"] = {"facts": [HOT]}
    r = sigil("orchestrate", LEAD, "-s", "first", url=server.url)
    assert r.returncode == 0, r.stderr
    [hot] = sigil.memories()
    assert hot["subject"] == "john smith" and hot["attribute"] == "lead status"

    # A later run finds otherwise, worded differently (no lexical rule would pair them).
    server.options.answers["extract_answer"] = {"facts": [WARM]}
    r = sigil("orchestrate", LEAD, "-s", "second", url=server.url)
    assert r.returncode == 0, r.stderr
    ext = completed(sigil.events("second"), "extract_memories")[0]["metadata"]
    assert ext["memories_superseded"] == 1 and ext["memories_new"] == 0
    [warm] = sigil.memories()
    assert warm["content"] == WARM["content"]
    shown = sigil("memory", "show", hot["id"]).stdout
    assert f"status: superseded (by {warm['id']})" in shown
    assert HOT["content"] in shown and WARM["content"] in shown  # history kept
    assert len(sigil.memories("--all")) == 2

    # The next run retrieves the current fact, not the superseded one.
    seen = len(server.bodies)
    r = sigil("orchestrate", LEAD, "-s", "third", url=server.url)
    assert r.returncode == 0, r.stderr
    prompts = server.prompts(since=seen)
    assert WARM["content"] in prompts and HOT["content"] not in prompts


def test_add_with_subject_and_attribute_supersedes(sigil):
    r = sigil("memory", "add", "Acme's budget is 50k", "--subject", "Acme Corp",
              "--attribute", "budget")
    old = r.stdout.split()[-1]
    r = sigil("memory", "add", "Finance confirmed eighty thousand for Acme", "--subject",
              "acme corp", "--attribute", "Budget")
    assert r.returncode == 0 and f"(supersedes {old})" in r.stdout, r.stdout
    [current] = sigil.memories()
    assert current["provider"] == "user" and "eighty" in current["content"]


def test_store_records_provenance_and_old_files_get_the_columns(tmp_path):
    path = tmp_path / "m.db"
    with MemoryStore(path, HashingEmbedder()) as store:
        out = store.remember(MemoryItem("Initech sells printers", provider="offline",
                                        model="offline-1"))
        assert store.get(out.item.id).provider == "offline"
        # The same fact found by a real model is no longer only the offline model's.
        again = store.remember(MemoryItem("Initech sells printers", provider="anthropic",
                                          model="claude-x"))
        assert again.action == "merged"
        assert (store.get(out.item.id).provider, store.get(out.item.id).model) == \
            ("anthropic", "claude-x")
        record = next(store.export())
        assert record["provider"] == "anthropic"
        assert store.forget_provider("anthropic") == 1 and store.count() == 0
