"""memory_sqlite with the semantic ``minilm`` embedder (plugin ``embedder_minilm``, installed
with the rest of Sigil: all-MiniLM-L6-v2 as int8 ONNX, no torch, nothing downloaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

import numpy as np
import pytest
from sigil_memory_sqlite.db import Database
from sigil_memory_sqlite.embedders import HashingEmbedder
from sigil_memory_sqlite.store import EmbedderMismatch, MemoryStore

from sigil_core import MemoryItem
from sigil_core.memory.embedders import choose

minilm = pytest.importorskip("sigil_embedder_minilm.embedder")

FACTS = [
    "Acme Corp's CTO prefers to be contacted by email",
    "Acme Corp ordered forty tons of steel in March",
    "Acme Corp's head office is in Berlin",
    "Globex wants a discount on the enterprise plan",
]
# Paraphrases sharing no word with their fact but "Acme" (which every fact has).
QUERY = "how much metal did Acme buy"
ANSWER = FACTS[1]
QUERY2, ANSWER2 = "where is Acme headquartered", FACTS[2]


def fact(content):
    return MemoryItem(content=content, memory_type="fact", confidence=0.8)


@pytest.fixture(scope="module")
def memory_minilm():
    embedder = minilm.MiniLMEmbedder()
    embedder.embed(["load the model once for the module"])
    return embedder


def test_minilm_vectors_are_normalised_and_semantic(memory_minilm):
    v = np.asarray(memory_minilm.embed(["The customer prefers email",
                                        "The client likes to be contacted by e-mail",
                                        "Steel prices rose in March"]))
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    # The hashing embedder, lexical, cannot see that paraphrase.
    h = np.asarray(HashingEmbedder().embed(["The customer prefers email",
                                            "The client likes to be contacted by e-mail"]))
    assert v[0] @ v[1] > h[0] @ h[1] + 0.3


def test_minilm_is_preferred_when_installed(memory_minilm):
    found = {"hashing": HashingEmbedder(), "minilm": memory_minilm}
    assert choose(found, None).name == "minilm"
    assert choose(found, "hashing").name == "hashing"


def test_store_with_minilm_finds_a_paraphrase(tmp_path, memory_minilm):
    with MemoryStore(tmp_path / "m.db", memory_minilm) as store:
        for f in FACTS:
            store.remember(fact(f))
        hits = store.search(QUERY)
        assert hits[0].item.content == ANSWER
        assert hits[0].vector_rank == 1
        assert store.search(QUERY2)[0].item.content == ANSWER2
        assert store.stats()["embedder"] == "minilm"


def test_switching_from_hashing_to_minilm_needs_reindex(tmp_path, memory_minilm):
    path = tmp_path / "m.db"
    with MemoryStore(path, HashingEmbedder()) as store:
        for f in FACTS:
            store.remember(fact(f))
    with pytest.raises(EmbedderMismatch, match="sigil memory reindex"):
        MemoryStore(path, memory_minilm)
    with MemoryStore(path, memory_minilm, check_embedder=False) as store:
        assert store.reindex(memory_minilm) == len(FACTS)
    with MemoryStore(path, memory_minilm) as store:
        assert store.search(QUERY)[0].item.content == ANSWER


def test_cli_picks_minilm_by_itself(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGIL_", "ANTHROPIC"))}
    env["SIGIL_HOME"] = str(tmp_path / "home")
    env["SIGIL_WORKER_AUTO_START"] = "0"  # no resident worker left behind
    others = {ep.name for ep in entry_points(group="sigil")} - {"memory_sqlite",
                                                               "embedder_minilm"}
    env["SIGIL_DISABLE_PLUGINS"] = ",".join(sorted(others))

    def run(*args):
        return subprocess.run([sys.executable, "-m", "sigil_core", "memory", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300, check=False)

    lines = tmp_path / "facts.jsonl"
    lines.write_text("".join(json.dumps({"content": f}) + "\n" for f in FACTS))
    r = run("import", str(lines))
    assert r.returncode == 0, r.stderr
    r = run("search", QUERY, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["content"] == ANSWER
    assert r.stderr == ""  # no warning, no progress bar
    db = Database(tmp_path / "home" / "memory.db")
    assert db.meta("embedder") == "minilm"
    db.close()
