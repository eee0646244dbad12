"""The ``minilm`` embedder: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime + tokenizers.

The model file ships inside this package (``model/``), pinned by sha256 and checked on load:
nothing is fetched from a model hub, at install or at run time. The graph outputs BERT's last
hidden state; sentence vectors are the mean of the token vectors over the attention mask,
L2-normalised, as sentence-transformers' Pooling + Normalize modules compute them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MODEL_DIR = Path(__file__).parent / "model"
MODEL_FILE = MODEL_DIR / "model_int8.onnx"
TOKENIZER_FILE = MODEL_DIR / "tokenizer.json"
#: What tools/build_model.py wrote (see model/NOTICE.md); any other file is refused.
MODEL_SHA256 = "5ead04778c9fe3cc635e371815e21afbfbf3da04fffb6c33b14cd0219c7b03fa"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
#: all-MiniLM-L6-v2 was trained on texts of up to 128 word pieces and truncates at 256.
MAX_TOKENS = 256
#: Texts per ONNX run; texts are sorted by length first so a batch pads little. (Dynamic int8
#: quantises a batch's activations with one scale: a text's vector moves slightly with its
#: batch-mates, cosine >= 0.98; batches of one would cost half the throughput.)
BATCH = 32


#: Texts whose vectors are remembered, per loaded model (the least recently used go first):
#: ~3 MB as float32. The same text is embedded again and again in practice: the task a run
#: retrieves with is the task of a retried, resumed or repeated run, and 100 concurrent runs of
#: one task would otherwise run the model 100 times for the same query (~2.5-4.5 ms of CPU a
#: text). LangChain's CacheBackedEmbeddings does this for any embedder, by text. A remembered
#: vector is also the same vector every time, whatever batch it first ran in (see BATCH).
CACHE_SIZE = 2048
#: Longer texts are not remembered (a key is the whole text).
CACHE_MAX_CHARS = 4096


class _Cache:
    """Vectors by text, least recently used evicted first; thread-safe."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def found(self, texts: Sequence[str]) -> dict[str, Any]:
        """The remembered vectors among ``texts``, by text."""
        out: dict[str, Any] = {}
        with self._lock:
            items = self._items
            for text in texts:
                vector = items.get(text)
                if vector is not None:
                    items.move_to_end(text)
                    out[text] = vector
        return out

    def keep(self, texts: Sequence[str], vectors: Any) -> None:
        with self._lock:
            items = self._items
            for text, vector in zip(texts, vectors):
                if len(text) <= CACHE_MAX_CHARS:
                    # A copy: a row would keep its whole batch's array alive (a reindex's).
                    items[text] = vector.copy()
                    items.move_to_end(text)
            while len(items) > CACHE_SIZE:
                items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class ModelUnavailable(RuntimeError):
    """The model cannot be loaded here (a dependency, the file, or its hash)."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: Models loaded in this process, shared by every embedder instance of the same files: each
#: plugin host registers its own instance (a resident worker's forked runs each make one), and
#: a worker that loaded the model before forking hands it to its runs loaded (~0.1-0.2 s each).
#: ONNX Runtime sessions take concurrent run() calls; with one intra-op thread the session has
#: no threads of its own, so a forked child uses it as the parent would.
_LOADED: dict[tuple[str, str, str], tuple[Any, Any, _Cache]] = {}
_LOADED_LOCK = threading.Lock()
#: Files read and checked ahead of loading (MiniLMEmbedder.prefetch), until the load takes them.
_PREFETCHED: dict[tuple[str, str, str], tuple[bytes, bytes]] = {}


class _Pending:
    """One call's texts waiting in the queue, then its vectors or the error of its batch."""

    __slots__ = ("error", "texts", "vectors")

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.vectors: Any = None  # one float32 row per text
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.vectors is not None or self.error is not None


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings, 384 dimensions, cosine similarity."""

    name = "minilm"
    dimensions = 384
    #: Preferred over ``hashing`` (0) when installed and loadable.
    priority = 10
    #: What loading imports (~0.14 s of CPU): imported by the caller before the model is
    #: loaded on a thread (sigil_core.memory.preload_embedder).
    preload_modules = ("numpy", "onnxruntime", "tokenizers")
    #: Vector hits below this cosine are dropped before fusion. Calibrated on
    #: bench/memory_quality.py's labelled set: 0.2 memories pass per unrelated query (3.3 at
    #: 0.2, 11 at 0.15) and 95% of relevant (query, answer) pairs are kept.
    min_similarity = 0.25
    #: Share of the vector side in weighted fusion: semantic similarity decides, bm25 breaks
    #: near-ties (0.8: best recall and MRR on the labelled set among 0.3-0.9, see its README).
    vector_weight = 0.8

    def __init__(self, model_file: Path = MODEL_FILE, tokenizer_file: Path = TOKENIZER_FILE,
                 model_sha256: str = MODEL_SHA256) -> None:
        self.model_file = Path(model_file)
        self.tokenizer_file = Path(tokenizer_file)
        self.model_sha256 = model_sha256
        self._session: Any = None
        self._tokenizer: Any = None
        self._cache = _Cache()  # the loaded model's, once loaded
        self._error: ModelUnavailable | None = None
        #: Calls waiting to be embedded, and whether one caller is embedding (see embed()).
        self._turn = threading.Condition()
        self._queue: list[_Pending] = []
        self._leading = False

    # ----------------------------------------------------------------- loading

    def ready(self) -> bool:
        """Load the model now (once per process, shared by every instance); ModelUnavailable
        says why it cannot be."""
        self._load()
        return True

    def _load(self) -> None:
        if self._session is not None:
            return
        if self._error is not None:
            raise self._error
        with _LOADED_LOCK:
            if self._session is not None:
                return
            key = self._key()
            try:
                loaded = _LOADED.get(key)
                if loaded is None:
                    loaded = _LOADED[key] = (*self._open(), _Cache())
            except ModelUnavailable as exc:
                self._error = exc
                raise
            self._session, self._tokenizer, self._cache = loaded

    def prefetch(self) -> None:
        """Read and check the model's files, ahead of loading it (see
        sigil_core.memory.preload_embedder): ~35 ms of reading and hashing that hold no
        interpreter lock, done on the loading thread while the caller imports numpy and
        onnxruntime. Loading uses them once (else reads them itself)."""
        key = self._key()
        with _LOADED_LOCK:
            if key in _LOADED or key in _PREFETCHED:
                return
        files = self._read_files()
        with _LOADED_LOCK:
            if key not in _LOADED:
                _PREFETCHED[key] = files

    def _key(self) -> tuple[str, str, str]:
        return (str(self.model_file), str(self.tokenizer_file), self.model_sha256)

    def _read_files(self) -> tuple[bytes, bytes]:
        """The model and tokenizer files' bytes, checked against the shipped checksums."""
        try:
            model = self.model_file.read_bytes()
            vocab = self.tokenizer_file.read_bytes()
        except OSError as exc:
            raise ModelUnavailable(f"model file missing: {exc}") from exc
        if sha256_of(model) != self.model_sha256:
            raise ModelUnavailable(f"{self.model_file} is not the shipped model (sha256 differs); "
                                   "reinstall sigil-embedder_minilm")
        if sha256_of(vocab) != TOKENIZER_SHA256:
            raise ModelUnavailable(f"{self.tokenizer_file} is not the shipped tokenizer (sha256 "
                                   "differs); reinstall sigil-embedder_minilm")
        return model, vocab

    def _open(self) -> tuple[Any, Any]:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except Exception as exc:
            raise ModelUnavailable(f"onnxruntime/tokenizers cannot be imported ({exc})") from exc
        # Called under _LOADED_LOCK.
        prefetched = _PREFETCHED.pop(self._key(), None)
        model, vocab = prefetched if prefetched is not None else self._read_files()
        options = ort.SessionOptions()
        options.log_severity_level = 3  # no shape-merge chatter on the user's terminal
        options.inter_op_num_threads = 1
        # One thread: what a run embeds is a text or two at a time, where a second thread
        # gains ~1 ms of wall time but its spin-waiting costs more CPU than the inference
        # (100 concurrent runs: 29 -> 21 ms of CPU per run). Bulk embedding (reindex) still
        # does ~310 texts/s on one thread.
        options.intra_op_num_threads = 1
        try:
            session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            tokenizer = Tokenizer.from_str(vocab.decode("utf-8"))
        except Exception as exc:
            raise ModelUnavailable(f"onnxruntime cannot load the model ({exc})") from exc
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        return session, tokenizer

    # ----------------------------------------------------------------- embedding

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One normalised vector per text, in order.

        A text embedded lately (the last :data:`CACHE_SIZE` of this model in this process) is
        not run through the model again, and a text given several times is embedded once.

        Calls from several threads at once (many runs in one process) are embedded together:
        the first caller embeds every text queued by then, in batches of :data:`BATCH`, while
        the others wait; whoever queued meanwhile goes next. A lone call is never delayed.
        Batches of a few texts cost ~2.4 ms of CPU a text against 4.5 ms one by one (the
        model's fixed cost per run is shared), which is what many concurrent runs need;
        dynamic int8 makes a text's vector depend slightly on its batch-mates (see BATCH).
        This is the group commit of databases (one leader writes for everyone waiting)
        applied to inference, as inference servers batch concurrent requests."""
        self._load()
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        if not texts:
            return []
        known = self._cache.found(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            mine = _Pending(missing)
            with self._turn:
                self._queue.append(mine)
                while not mine.done and self._leading:
                    self._turn.wait()
                leading = not mine.done
                if leading:
                    self._leading = True
                    batch, self._queue = self._queue, []
            if leading:
                self._lead(batch)
            if mine.error is not None:
                raise mine.error
            known.update(zip(missing, mine.vectors))
        # New lists each call: what a caller does with its vectors never reaches the cache.
        return [known[t].tolist() for t in texts]

    def _lead(self, batch: list[_Pending]) -> None:
        """Embed every queued call's texts at once (each distinct text once, and none that an
        earlier leader embedded meanwhile) and hand each call its vectors."""
        try:
            wanted = list(dict.fromkeys(t for p in batch for t in p.texts))
            vectors = self._cache.found(wanted)
            fresh = [t for t in wanted if t not in vectors]
            if fresh:
                rows = self._embed_all(fresh)
                self._cache.keep(fresh, rows)
                vectors.update(zip(fresh, rows))
        except BaseException as exc:  # noqa: BLE001 - each waiting caller raises it
            for p in batch:
                p.error = exc
        else:
            for p in batch:
                p.vectors = [vectors[t] for t in p.texts]
        finally:
            with self._turn:
                self._leading = False
                self._turn.notify_all()

    def clear_cache(self) -> None:
        """Forget the remembered vectors (of this model, in this process)."""
        self._cache.clear()

    def _embed_all(self, texts: list[str]) -> Any:
        """The texts' vectors, one float32 row each, in order."""
        import numpy as np

        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), BATCH):
            idx = order[start:start + BATCH]
            out[idx] = self._embed_batch([texts[i] for i in idx])
        return out

    def _embed_batch(self, texts: list[str]) -> Any:
        import numpy as np

        encodings = self._tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)
