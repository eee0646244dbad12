"""The shipped all-MiniLM-L6-v2 (int8 ONNX): files pinned, vectors true to the original model,
semantic, loaded only when used, and the fallback to ``hashing`` when it cannot load."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sigil_embedder_minilm.embedder import (
    MODEL_FILE,
    MODEL_SHA256,
    TOKENIZER_FILE,
    TOKENIZER_SHA256,
    MiniLMEmbedder,
    ModelUnavailable,
)

from sigil_core.memory import embedders as core_embedders
from sigil_core.memory.embedders import HashingEmbedder, choose

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def model():
    embedder = MiniLMEmbedder()
    embedder.ready()
    return embedder


def test_shipped_files_are_the_pinned_ones():
    assert hashlib.sha256(MODEL_FILE.read_bytes()).hexdigest() == MODEL_SHA256
    assert hashlib.sha256(TOKENIZER_FILE.read_bytes()).hexdigest() == TOKENIZER_SHA256
    assert (MODEL_FILE.parent / "LICENSE").read_text().startswith("\n") or \
        "Apache License" in (MODEL_FILE.parent / "LICENSE").read_text()
    assert "all-MiniLM-L6-v2" in (MODEL_FILE.parent / "NOTICE.md").read_text()


def test_vectors_match_the_original_model(model):
    """Reference vectors: the float32 original through sentence-transformers on torch."""
    ref = json.loads((HERE / "reference_vectors.json").read_text())
    ours = np.asarray(model.embed(ref["texts"]))
    cosines = (ours * np.asarray(ref["vectors"])).sum(axis=1)
    assert ours.shape == (len(ref["texts"]), 384)
    assert cosines.min() >= 0.99, cosines


def test_paraphrase_is_closer_than_an_unrelated_fact(model):
    v = np.asarray(model.embed(["Does Alex eat meat?", "The user is vegetarian",
                                "Acme Corp is based in Berlin"]))
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    assert v[0] @ v[2] < model.min_similarity  # unrelated: under the floor


def test_batching_keeps_each_text_its_vector(model):
    """Texts come back in their order whatever the batching. Dynamic int8 quantises a batch's
    activations with one scale, so a text's vector moves slightly with its batch-mates
    (cosine >= 0.98 here): bounded, and far below what separates related from unrelated."""
    texts = [f"fact number {i} about " + "word " * (i % 17) for i in range(70)]
    one_by_one = np.asarray([model.embed([t])[0] for t in texts[:6]])
    batched = np.asarray(model.embed(texts))[:6]
    cosines = (one_by_one * batched).sum(axis=1)
    assert cosines.min() >= 0.98, cosines
    assert np.argmax(batched @ one_by_one.T, axis=0).tolist() == list(range(6))
    assert model.embed([]) == []


def test_concurrent_calls_are_embedded_together_each_getting_its_own(model, monkeypatch):
    """Calls from many threads at once (many runs in one process): while one caller embeds,
    the others queue and the next caller embeds all of them in one go; each gets its own
    texts' vectors, in order."""
    texts = [[f"lead {i} works at company {i}", f"company {i} sells product {i}"]
             for i in range(8)]
    alone = [np.asarray(model.embed(t)) for t in texts]
    model.clear_cache()  # else every call below is answered from the cache
    calls: list[int] = []
    first_started, release = threading.Event(), threading.Event()
    real = model._embed_all

    def slow_first(batch: list[str]) -> list[list[float]]:
        calls.append(len(batch))
        if len(calls) == 1:
            first_started.set()
            assert release.wait(30)
        return real(batch)

    monkeypatch.setattr(model, "_embed_all", slow_first)
    got: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        got[i] = np.asarray(model.embed(texts[i]))

    leader = threading.Thread(target=call, args=(0,))
    leader.start()
    assert first_started.wait(30)
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, 8)]
    for t in others:
        t.start()
    deadline = time.monotonic() + 30
    while len(model._queue) < 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for t in [leader, *others]:
        t.join(30)
    assert calls == [2, 14]  # the leader's own call, then the seven queued ones at once
    for i in range(8):
        assert got[i].shape == (2, 384)
        assert ((got[i] * alone[i]).sum(axis=1) >= 0.98).all()


def test_an_error_reaches_every_caller_of_its_batch_and_the_next_call_works(model,
                                                                            monkeypatch):
    def broken(batch: list[str]) -> list[list[float]]:
        raise RuntimeError("onnxruntime: out of memory")

    model.clear_cache()
    monkeypatch.setattr(model, "_embed_all", broken)
    errors: list[str] = []

    def call() -> None:
        try:
            model.embed(["a fact"])
        except RuntimeError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == ["onnxruntime: out of memory"] * 4
    monkeypatch.undo()
    assert len(model.embed(["a fact"])[0]) == 384


def _counting(model, monkeypatch) -> list[list[str]]:
    """What reaches the model from now on, batch by batch."""
    seen: list[list[str]] = []
    real = model._embed_batch

    def counted(texts: list[str]):
        seen.append(list(texts))
        return real(texts)

    monkeypatch.setattr(model, "_embed_batch", counted)
    model.clear_cache()
    return seen


def test_a_text_embedded_lately_is_not_run_again(model, monkeypatch):
    seen = _counting(model, monkeypatch)
    first = model.embed(["Qualify this lead: John Smith, CEO at Acme Corp", "another text"])
    again = model.embed(["another text", "Qualify this lead: John Smith, CEO at Acme Corp",
                         "a third text"])
    assert seen == [["another text", "Qualify this lead: John Smith, CEO at Acme Corp"],
                    ["a third text"]]
    assert again[0] == first[1] and again[1] == first[0]
    # Each call gets lists of its own: changing them changes nothing for the next caller.
    again[0][0] = 42.0
    assert model.embed(["another text"])[0] == first[1]
    assert len(seen) == 2


def test_a_text_given_several_times_is_embedded_once(model, monkeypatch):
    seen = _counting(model, monkeypatch)
    got = model.embed(["same", "other", "same", "same"])
    assert seen == [["same", "other"]]
    assert got[0] == got[2] == got[3] and got[0] != got[1]


def test_concurrent_calls_for_one_text_run_the_model_once(model, monkeypatch):
    """100 runs of one task ask for the same query's vector at the same moment: whoever
    queued behind the first caller gets the vector it computed."""
    seen = _counting(model, monkeypatch)
    start = threading.Barrier(20)
    got: list[list[float]] = []

    def call() -> None:
        start.wait(30)
        got.append(model.embed(["Qualify this lead: Maria Chen, CTO at Globex"])[0])

    threads = [threading.Thread(target=call) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 20 and all(v == got[0] for v in got)
    assert seen == [["Qualify this lead: Maria Chen, CTO at Globex"]]


def test_the_cache_is_bounded_least_recently_used_first(model, monkeypatch):
    from sigil_embedder_minilm import embedder as module

    seen = _counting(model, monkeypatch)
    monkeypatch.setattr(module, "CACHE_SIZE", 3)
    model.embed(["a", "b", "c"])
    model.embed(["a"])  # a is now the most recently used
    model.embed(["d"])  # b goes
    assert len(model._cache) == 3
    seen.clear()
    model.embed(["a", "c", "d"])
    assert seen == []
    model.embed(["b"])
    assert seen == [["b"]]
    long = "word " * 1000  # over CACHE_MAX_CHARS: embedded every time, never kept
    model.embed([long])
    model.embed([long])
    assert seen[1:] == [[long], [long]]


def test_a_damaged_model_file_is_refused(tmp_path):
    broken = tmp_path / "model_int8.onnx"
    data = bytearray(MODEL_FILE.read_bytes())
    data[len(data) // 2] ^= 0xFF
    broken.write_bytes(bytes(data))
    embedder = MiniLMEmbedder(model_file=broken)
    with pytest.raises(ModelUnavailable, match="sha256"):
        embedder.ready()
    with pytest.raises(ModelUnavailable):
        embedder.embed(["anything"])


def test_prefetched_files_are_read_once_and_loaded(tmp_path, monkeypatch, model):
    """prefetch() reads and checks the files ahead of loading (on the loading thread, while
    the caller imports); the load then uses them instead of reading them again."""
    copy = tmp_path / "model_int8.onnx"
    copy.write_bytes(MODEL_FILE.read_bytes())
    reads: list[str] = []
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        reads.append(self.name)
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    embedder = MiniLMEmbedder(model_file=copy)
    embedder.prefetch()
    assert reads == ["model_int8.onnx", "tokenizer.json"]
    embedder.prefetch()  # already read: nothing again
    assert embedder.ready()
    assert reads == ["model_int8.onnx", "tokenizer.json"]
    text = "The customer renewed the enterprise plan"
    assert np.allclose(embedder.embed([text]), model.embed([text]), atol=1e-6)


def test_a_damaged_model_file_is_refused_by_prefetch_and_by_the_load(tmp_path):
    broken = tmp_path / "model_int8.onnx"
    data = bytearray(MODEL_FILE.read_bytes())
    data[7] ^= 0xFF
    broken.write_bytes(bytes(data))
    embedder = MiniLMEmbedder(model_file=broken)
    with pytest.raises(ModelUnavailable, match="sha256"):
        embedder.prefetch()
    with pytest.raises(ModelUnavailable, match="sha256"):
        embedder.ready()


def test_choose_falls_back_to_hashing_with_one_warning(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(core_embedders, "_unavailable", {})
    broken = MiniLMEmbedder(model_file=tmp_path / "missing.onnx")
    registry = {"hashing": HashingEmbedder(), "minilm": broken}
    assert choose(registry, None).name == "hashing"
    assert choose(registry, None).name == "hashing"
    err = capsys.readouterr().err
    assert err.count("Warning: embedder 'minilm' cannot load") == 1, err
    assert "uses 'hashing' instead" in err
    # Named in config, it is not replaced silently: embedding fails (the store's MEMORY_004).
    assert choose(registry, "minilm") is broken


def test_help_does_not_load_the_model():
    code = ("import sys\nfrom sigil_core.cli import main\nsys.argv = ['sigil', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('onnxruntime', 'tokenizers', 'sigil_embedder_minilm')))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGIL_")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    loaded = r.stdout.strip().splitlines()[-1]
    assert "onnxruntime" not in loaded and "tokenizers" not in loaded, loaded
