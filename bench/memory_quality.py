"""Retrieval quality of memory_sqlite on a labelled set: each embedder, each fusion, and BM25.

    python bench/memory_quality.py [--embedders hashing,minilm] [--json]

The set (bench/memory_quality_data.py): an agent's memories (leads, people, preferences,
events, skills, patterns) with look-alikes generated from templates, and labelled queries of
four kinds: ``lexical`` (repeat the answer's words), ``paraphrase`` (other words),
``distractor`` (share words with look-alikes that do not answer), ``unrelated`` (nothing
answers: what passes the similarity floor is noise).

For every embedder the store is built once (a real SQLite file, as ``add_raw`` writes it), then
every query is answered by:

* ``bm25``: FTS5 bm25 alone (the full-text half as it is; the baseline);
* ``vector``: the vector half alone, cut at the embedder's similarity floor;
* ``rrf``: both halves fused by reciprocal rank (k = 60), the previous default;
* ``weighted``: both halves fused by score (``sigil_core.memory.fusion``), the default now.

Printed: recall@5/10/20 and MRR@10 per kind, for each (embedder, mode), then the targets of
issue 22 with the figures that meet them or not, and the similarity floor's effect on
unrelated queries (hits passing it) and on relevant pairs (answers cut by it).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from memory_quality_data import MEMORIES, QUERIES, filler
from sigil_memory_sqlite.store import MemoryStore

from sigil_core.memory import fusion
from sigil_core.memory.embedders import HashingEmbedder
from sigil_core.model import MemoryItem

KINDS = ("lexical", "paraphrase", "distractor")
MODES = ("bm25", "vector", "rrf", "weighted")
K = 20
#: Similarity floors whose effect is printed (calibration of each embedder's min_similarity).
FLOORS = (0.05, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)


def embedders(names: list[str]) -> list:
    out = []
    for name in names:
        if name == "hashing":
            out.append(HashingEmbedder())
        elif name == "minilm":
            from sigil_embedder_minilm.embedder import MiniLMEmbedder

            out.append(MiniLMEmbedder())
        else:
            raise SystemExit(f"unknown embedder {name!r} (hashing, minilm)")
    return out


def build(store: MemoryStore) -> dict[int, str]:
    """Every labelled memory and the look-alikes; rowid -> key (look-alikes: "filler")."""
    keys = list(MEMORIES) + [f"filler_{i}" for i in range(len(FILLER))]
    texts = [t for _, t in MEMORIES.values()] + [t for _, t in FILLER]
    kinds = [k for k, _ in MEMORIES.values()] + [k for k, _ in FILLER]
    # Stored in a fixed shuffled order: FTS5 returns equal bm25 scores in rowid order, so
    # storing the labelled memories first would break every tie in favour of the answers.
    order = list(range(len(keys)))
    random.Random(0).shuffle(order)
    keys, texts, kinds = ([seq[i] for i in order] for seq in (keys, texts, kinds))
    stored = store.add_raw([MemoryItem(content=t, memory_type=k) for t, k in zip(texts, kinds)])
    rows = dict(store.db.query("select id, rowid from items"))
    return {rows[item.id]: key for item, key in zip(stored, keys)}


def rankings(store: MemoryStore, query: str, floor: float, vector_weight: float
             ) -> dict[str, list[int]]:
    vector = store.embed([query])[0]
    vec_all = store.vector_search(vector, K)
    vec = [(r, s) for r, s in vec_all if s >= floor]
    txt = store.text_search_scored(query, K)
    return {
        "bm25": [r for r, _ in txt],
        "vector": [r for r, _ in vec],
        "rrf": [f.key for f in fusion.fuse(vec, [r for r, _ in txt], K, mode="rrf")],
        "weighted": [f.key for f in fusion.fuse(vec, txt, K, mode="weighted", floor=floor,
                                                vector_weight=vector_weight)],
    }


def metrics(ranked: list[str], relevant: set[str]) -> dict[str, float]:
    out = {f"recall@{n}": len(relevant & set(ranked[:n])) / len(relevant) for n in (5, 10, 20)}
    rr = 0.0
    for i, key in enumerate(ranked[:10], 1):
        if key in relevant:
            rr = 1.0 / i
            break
    out["mrr@10"] = rr
    return out


def evaluate(embedder) -> dict:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, MemoryStore(Path(tmp) / "q.db", embedder) as store:
        keys = build(store)
        built = time.perf_counter() - t0
        floor = float(getattr(embedder, "min_similarity", 0.0))
        weight = float(getattr(embedder, "vector_weight", fusion.VECTOR_WEIGHT))
        per_mode: dict[str, dict[str, list[dict[str, float]]]] = {
            m: {k: [] for k in KINDS} for m in MODES}
        noise = {m: [] for m in MODES}
        relevant_sims: list[float] = []
        unrelated_top: list[float] = []
        unrelated_sims: list[float] = []  # every memory's similarity to an unrelated query
        for kind, text, answers in QUERIES:
            ranks = rankings(store, text, floor, weight)
            vector = store.embed([text])[0]
            sims = dict(store.vector_search(vector, len(keys)))
            if kind == "unrelated":
                for m in MODES:
                    noise[m].append(len(ranks[m]))
                unrelated_top.append(max(sims.values()))
                unrelated_sims += list(sims.values())
                continue
            rowid_of = {v: r for r, v in keys.items()}
            relevant_sims += [sims.get(rowid_of[a], -1.0) for a in answers]
            for m in MODES:
                per_mode[m][kind].append(metrics([keys[r] for r in ranks[m]], set(answers)))
    table: dict[str, dict[str, dict[str, float]]] = {}
    for m in MODES:
        table[m] = {}
        for kind in (*KINDS, "all"):
            rows = [r for k in KINDS for r in per_mode[m][k]] if kind == "all" else per_mode[m][kind]
            table[m][kind] = {name: round(statistics.fmean(r[name] for r in rows), 3)
                              for name in rows[0]}
    return {
        "embedder": embedder.name, "items": len(keys), "build_s": round(built, 2),
        "floor": floor, "vector_weight": weight, "table": table,
        "unrelated_hits_passing": {m: round(statistics.fmean(noise[m]), 1) for m in MODES},
        "unrelated_top_similarity": round(max(unrelated_top), 3),
        "relevant_below_floor": sum(1 for s in relevant_sims if s < floor),
        "relevant_pairs": len(relevant_sims),
        "relevant_similarity_p10": round(float(np.percentile(relevant_sims, 10)), 3),
        "floors": {str(f): {"unrelated_hits_per_query": round(sum(
            1 for x in unrelated_sims if x >= f) / max(1, len(unrelated_top)), 1),
            "relevant_kept": round(sum(1 for x in relevant_sims if x >= f) / len(relevant_sims), 3)}
            for f in FLOORS},
    }


def show(result: dict) -> None:
    print(f"\n== embedder {result['embedder']}: {result['items']} memories, floor "
          f"{result['floor']}, vector weight {result['vector_weight']} (built in "
          f"{result['build_s']} s)")
    print(f"{'mode':<9} {'kind':<11} {'R@5':>6} {'R@10':>6} {'R@20':>6} {'MRR@10':>7}")
    for m in MODES:
        for kind in (*KINDS, "all"):
            r = result["table"][m][kind]
            print(f"{m:<9} {kind:<11} {r['recall@5']:>6.3f} {r['recall@10']:>6.3f} "
                  f"{r['recall@20']:>6.3f} {r['mrr@10']:>7.3f}")
    print(f"unrelated queries: hits passing per query {result['unrelated_hits_passing']}; "
          f"best similarity of an unrelated query {result['unrelated_top_similarity']}")
    print(f"relevant pairs under the floor: {result['relevant_below_floor']} of "
          f"{result['relevant_pairs']} (10th percentile of their similarity "
          f"{result['relevant_similarity_p10']})")
    print("floor calibration (floor: memories passing per unrelated query / share of relevant "
          "pairs kept):")
    print("  " + "  ".join(f"{f}: {v['unrelated_hits_per_query']}/{v['relevant_kept']}"
                           for f, v in result["floors"].items()))


def targets(results: list[dict]) -> None:
    """Issue 22's targets, for the default embedder (the best installed) and the default mode."""
    best = results[-1]
    t = best["table"]
    mode = fusion.DEFAULT_MODE
    print(f"\n== targets (embedder {best['embedder']}, fusion {mode})")
    checks = [
        ("hybrid recall@10 overall", t[mode]["all"]["recall@10"], ">= 0.85",
         t[mode]["all"]["recall@10"] >= 0.85),
        ("hybrid recall@10 on paraphrases", t[mode]["paraphrase"]["recall@10"], ">= 0.75",
         t[mode]["paraphrase"]["recall@10"] >= 0.75),
    ]
    for kind in (*KINDS, "all"):
        halves = max(t["bm25"][kind]["recall@10"], t["vector"][kind]["recall@10"])
        checks.append((f"recall@10 {kind}: hybrid vs best half", t[mode][kind]["recall@10"],
                       f">= {halves:.3f}", t[mode][kind]["recall@10"] >= halves - 1e-9))
    for kind in (*KINDS, "all"):
        halves = max(t["bm25"][kind]["recall@5"], t["vector"][kind]["recall@5"])
        checks.append((f"recall@5 {kind}: hybrid vs best half", t[mode][kind]["recall@5"],
                       f">= {halves:.3f}", t[mode][kind]["recall@5"] >= halves - 1e-9))
    for name, value, target, ok in checks:
        print(f"{name:<42} {value:>6.3f}  target {target:<8} {'ok' if ok else 'MISSED'}")


def cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def installed_mb(*packages: str) -> float:
    import importlib.util
    import os

    total = 0
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            for folder, _, files in os.walk(root):
                total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total / 1e6


def speed() -> None:
    """minilm's load time, throughput and install size, next to issue 22's targets. Wall
    times depend on what else the 2 cores run; CPU seconds do much less."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    from sigil_embedder_minilm.embedder import MiniLMEmbedder

    model = MiniLMEmbedder()
    model.ready()
    load_wall, load_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    texts = [t for _, t in MEMORIES.values()] * 4  # 348 short texts (4-20 words)
    model.embed(texts[:32])
    t0, c0 = time.perf_counter(), cpu_seconds()
    model.embed(texts)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    size = installed_mb("onnxruntime", "tokenizers", "huggingface_hub", "hf_xet", "flatbuffers",
                        "sigil_embedder_minilm")
    print("\n== minilm (int8 ONNX): load, throughput, install size")
    print(f"load (import, sha256 check, session)  {load_wall:6.2f} s wall, {load_cpu:.2f} s CPU"
          f"   target <= 1 s")
    print(f"embedding {len(texts)} short texts          {len(texts) / wall:6.0f} /s wall, "
          f"{len(texts) / cpu:.0f} per CPU second   target >= 200 /s on 2 cores")
    print(f"installed (onnxruntime, tokenizers + hub, model)  {size:5.0f} MB   target <= 150 MB"
          "   (protobuf, numpy: already there)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedders", default="hashing,minilm")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    n_queries = sum(1 for q in QUERIES if q[0] != "unrelated")
    print(f"labelled set: {len(MEMORIES)} memories + {len(FILLER)} look-alikes, "
          f"{n_queries} queries with answers + {len(QUERIES) - n_queries} unrelated")
    chosen = embedders(args.embedders.split(","))
    if not args.json and any(e.name == "minilm" for e in chosen):
        speed()  # first: the load time is the cold one (onnxruntime not imported yet)
    results = [evaluate(e) for e in chosen]
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for r in results:
        show(r)
    targets(results)
    return 0


FILLER = filler()

if __name__ == "__main__":
    sys.exit(main())
