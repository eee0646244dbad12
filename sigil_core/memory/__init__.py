"""What every memory backend shares: settings, the store protocol, consolidation rules, fusion,
the retrieve and extract phases, the ``sigil memory`` commands and a behavioural test suite.

A backend plugin (``memory_sqlite``, ``memory_pgvector``, a third party's) registers a
:class:`MemoryBackend` through ``sigil_register_memory_backends``. Its ``open`` returns a
:class:`MemoryStore` (async methods; a synchronous store runs them in a thread). The backend's
``sigil_retrieve`` / ``sigil_extract`` answer only when ``memory.backend`` names it, and call
:func:`sigil_core.memory.phases.retrieve` / ``extract``, so every backend filters, extracts and
reports alike. ``sigil memory ...`` (:mod:`sigil_core.memory.cli`) works on any of them and
copies one into another (``migrate``).

```yaml
memory:
  backend: sqlite          # or pgvector, or any registered backend; SIGIL_MEMORY_BACKEND
  path: memory.db          # sqlite: relative to the config directory; SIGIL_MEMORY_DB
  dsn: postgresql://sigil@db.internal/sigil   # pgvector; SIGIL_MEMORY_DSN
  schema: sigil_memory     # pgvector: the PostgreSQL schema holding the tables
  embedder: hashing        # default: the registered embedder with the highest priority
  k: 20                    # hybrid results per retrieval
  filter_to: 10            # LLM filtering keeps this many when more come back
  min_similarity: 0.08     # vector hits below this cosine are dropped (embedder default)
  enabled: true            # false: no retrieval and no extraction
  extract: true            # false: retrieval only
  include_offline: false   # true: runs with a real provider also retrieve the offline model's
```
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from ..errors import ConfigError, MemoryBackendError
from ..model import MemoryItem

DEFAULT_BACKEND = "sqlite"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@attrs.define
class MemorySettings:
    backend: str = DEFAULT_BACKEND
    path: str | None = None
    dsn: str | None = None
    schema: str = "sigil_memory"
    embedder: str | None = None
    k: int = 20
    filter_to: int = 10
    min_similarity: float | None = None
    enabled: bool = True
    extract: bool = True
    #: Memories made by the offline model are not retrieved by runs with a real provider
    #: (they are placeholders, not findings) unless this is true.
    include_offline: bool = False

    @classmethod
    def from_config(cls, config: Any) -> MemorySettings:
        """The ``memory`` section, checked (ConfigError says what is wrong). A run reads it
        ~8 times: the answer for the same section and SIGIL_MEMORY_BACKEND is kept (a copy
        is returned, so callers may change theirs)."""
        section = dict(config.section("memory")) if config is not None else {}
        try:
            key: Any = (tuple(section.items()), os.environ.get("SIGIL_MEMORY_BACKEND"))
            known = _SETTINGS.get(key)
        except TypeError:  # a value that cannot be a key (a list): checked every time
            key = known = None
        if known is not None:
            # Built from the kept values: copy.copy of a slotted attrs class (reduce, then
            # setstate) cost more than reading the section (~8 us, ~8 times a run).
            return cls(*known)
        settings = cls._checked(section)
        if key is not None:
            if len(_SETTINGS) >= 64:
                _SETTINGS.clear()
            _SETTINGS[key] = attrs.astuple(settings, recurse=False)
        return settings

    @classmethod
    def _checked(cls, section: dict[str, Any]) -> MemorySettings:
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"memory.{unknown[0]}: unknown key; known keys: "
                              f"{', '.join(sorted(known))}")
        settings = cls(**section)
        env_backend = os.environ.get("SIGIL_MEMORY_BACKEND")
        if env_backend:
            settings.backend = env_backend.strip()
        if not isinstance(settings.backend, str) or not settings.backend:
            raise ConfigError("memory.backend: must be a backend name, e.g. sqlite or pgvector")
        for name in ("k", "filter_to"):
            value = getattr(settings, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"memory.{name}: must be a whole number >= 1, got {value!r}")
        if settings.min_similarity is not None and not isinstance(settings.min_similarity,
                                                                  (int, float)):
            raise ConfigError("memory.min_similarity: must be a number")
        for name in ("enabled", "extract", "include_offline"):
            if not isinstance(getattr(settings, name), bool):
                raise ConfigError(f"memory.{name}: must be true or false")
        if not isinstance(settings.schema, str) or not _SCHEMA_NAME.match(settings.schema):
            raise ConfigError(f"memory.schema: {settings.schema!r} is not a plain lower-case SQL "
                              "name (letters, digits, _; at most 63)")
        return settings


#: MemorySettings.from_config's answers, by (section items, SIGIL_MEMORY_BACKEND).
_SETTINGS: dict[Any, tuple[Any, ...]] = {}


@attrs.define
class Hit:
    item: MemoryItem
    score: float
    vector_rank: int | None = None
    text_rank: int | None = None
    similarity: float | None = None


@attrs.define
class RememberOutcome:
    item: MemoryItem
    action: str  # "new" | "merged" | "superseded"
    previous: MemoryItem | None = None


@attrs.define
class Record:
    """One stored item as ``migrate`` copies it: the item, its status, its history and its
    vector (None for superseded items, which are in no index)."""

    item: MemoryItem
    status: str = "active"
    superseded_by: str | None = None
    history: list[dict[str, Any]] = attrs.Factory(list)
    vector: Sequence[float] | None = None


class EmbedderMismatch(MemoryBackendError):
    """The store was indexed with another embedder; ``sigil memory reindex`` fixes it."""


@runtime_checkable
class MemoryStore(Protocol):
    """A memory store bound to one embedder. Every method may raise MemoryBackendError."""

    #: Where it lives, for messages: a file path, or ``host/db schema`` (never a password).
    location: str
    embedder: Any

    async def search(self, text: str, k: int = 20, *,
                     min_similarity: float | None = None) -> list[Hit]: ...

    async def relevant_categories(self, task: str, hits: Sequence[Hit]) -> list[str]: ...

    async def remember_many(self, items: Sequence[MemoryItem], *,
                            session_id: str | None = None) -> list[RememberOutcome]: ...

    async def get(self, item_id: str) -> MemoryItem | None: ...

    async def status(self, item_id: str) -> tuple[str, str | None] | None: ...

    async def history(self, item_id: str) -> list[dict[str, Any]]: ...

    async def list(self, *, memory_type: str | None = None, category: str | None = None,
                   include_superseded: bool = False,
                   limit: int | None = None) -> list[MemoryItem]: ...

    async def forget(self, item_id: str) -> bool: ...

    async def count(self) -> int: ...

    async def stats(self) -> dict[str, Any]: ...

    def records(self) -> AsyncIterator[Record]:
        """Every item, superseded ones too, oldest first, with history and vector."""

    async def load(self, records: Sequence[Record]) -> int:
        """Copy records as they are (ids, status, history, vectors): the target of migrate."""

    async def reindex(self, embedder: Any) -> int: ...

    async def close(self) -> None: ...


@runtime_checkable
class MemoryBackend(Protocol):
    """Registered through ``sigil_register_memory_backends``; ``name`` is ``memory.backend``."""

    name: str
    description: str

    async def open(self, config: Any, embedder: Any, *, check_embedder: bool = True,
                   location: str | None = None) -> MemoryStore:
        """The store the config describes (``location`` overrides its path or DSN)."""


async def open_store(config: Any, registries: Any, *, backend: str | None = None,
                     check_embedder: bool = True, location: str | None = None,
                     embedder: str | None = None) -> MemoryStore:
    """Open the configured (or named) backend's store with the configured embedder.
    ``registries`` is anything with ``registry(kind)`` (a Run or a PluginHost)."""
    from .embedders import choose, chosen_already

    settings = MemorySettings.from_config(config)
    name = backend or settings.backend
    backends = registries.registry("memory_backends")
    if name not in backends:
        known = ", ".join(sorted(backends)) or "none installed"
        raise ConfigError(f"memory.backend: unknown memory backend {name!r}; installed: {known}")
    # Choosing may load the embedder (a model: ~0.3 s of CPU): then on a thread, so the event
    # loop goes on planning meanwhile; when preload_embedder started it, this waits for that
    # load. Once loaded, no thread (every run, and every memory command, opens a store).
    embedders = registries.registry("embedders")
    chosen = chosen_already(embedders, embedder or settings.embedder)
    if chosen is None:
        chosen = await asyncio.to_thread(choose, embedders, embedder or settings.embedder)
    store: MemoryStore = await backends[name].open(config, chosen,
                                                   check_embedder=check_embedder,
                                                   location=location)
    return store


#: The columns of ``item_history`` in the order :func:`history_entries` reads them.
HISTORY_COLUMNS = ("event", "content", "confidence", "session_id", "related_id", "at")


def history_entries(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """History rows (:data:`HISTORY_COLUMNS`, oldest first) as every backend returns them:
    one dict each, without the empty fields."""
    return [{k: v for k, v in zip(HISTORY_COLUMNS, row) if v is not None} for row in rows]


def list_query(columns: str, table: str, *, mark: str, tiebreak: str,
               memory_type: str | None = None, category: str | None = None,
               include_superseded: bool = False,
               limit: int | None = None) -> tuple[str, list[Any]]:
    """The SQL and parameters of a store's ``list``: active items (all with
    ``include_superseded``), of one type and category when given, most recently updated first
    (``tiebreak``: the column ordering items updated at the same moment), at most ``limit``.
    ``mark`` is the driver's parameter placeholder (``?``, ``%s``)."""
    where, params = [], []
    if not include_superseded:
        where.append("status = 'active'")
    if memory_type:
        where.append(f"memory_type = {mark}")
        params.append(memory_type)
    if category:
        where.append(f"category = {mark}")
        params.append(category)
    sql = f"select {columns} from {table}"
    if where:
        sql += " where " + " and ".join(where)
    sql += f" order by updated_at desc, {tiebreak} desc"
    if limit:
        sql += f" limit {int(limit)}"
    return sql, params


#: Threads that may wait in an embedder at once (see :func:`in_embedding_thread`). An embedder
#: that batches concurrent calls (minilm embeds every caller queued while it works in one go)
#: gets batches this large; six threads (asyncio's default pool here) capped them at ~4 texts
#: (100 concurrent runs: 6.9 ms of embedding CPU a run with 6 threads, 5.7 ms with 32).
EMBED_THREADS = 32
_embed_pool: tuple[int, Any] | None = None
_embed_pool_lock = threading.Lock()


async def in_embedding_thread(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` (an embedding: ``store.embed(texts)``, ``embed_checked(...)``) on the
    process's embedding threads, awaited.

    A model's inference takes milliseconds a text: run on the event loop it would stop every
    other run of the process meanwhile (and a batching embedder would never see two calls at
    once). On these threads the loop goes on, the model releases the GIL while it computes, and
    concurrent calls reach the embedder together. One pool per process (a forked child makes
    its own), shared by every backend."""
    global _embed_pool
    from concurrent.futures import ThreadPoolExecutor

    with _embed_pool_lock:
        if _embed_pool is None or _embed_pool[0] != os.getpid():
            _embed_pool = (os.getpid(), ThreadPoolExecutor(max_workers=EMBED_THREADS,
                                                           thread_name_prefix="sigil-embed"))
        pool = _embed_pool[1]
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


def texts_to_embed(items: Sequence[MemoryItem], known: dict[tuple[str, str], Any]) -> list[str]:
    """The texts of the items ``known`` has no vector for, in order: what the model must embed.

    ``known``: the stored vectors of facts stored word for word already, by
    ``(content, memory_type)``; such a fact is merged with the stored one, so its stored vector
    stands in and the model runs for the others only (every backend does this)."""
    return [i.content for i in items if (i.content, i.memory_type) not in known]


def fill_vectors(items: Sequence[MemoryItem], known: dict[tuple[str, str], Any], fresh: Any,
                 dims: int) -> Any:
    """The items' vectors (float32, one row each): ``known`` ones, and ``fresh``, the
    embeddings of :func:`texts_to_embed` in order (None when there are none), for the rest."""
    import numpy as np

    vectors = np.empty((len(items), dims), dtype=np.float32)
    missing = [n for n, i in enumerate(items) if (i.content, i.memory_type) not in known]
    if missing:
        vectors[missing] = np.asarray(fresh, dtype=np.float32).reshape(len(missing), dims)
    for n, item in enumerate(items):
        stored = known.get((item.content, item.memory_type))
        if stored is not None:
            vectors[n] = stored
    return vectors


def embed_checked(embedder: Any, texts: Sequence[str], dims: int) -> Any:
    """``embedder.embed(texts)``, checked: one vector of ``dims`` numbers per text. Anything
    else, or the embedder failing, is MEMORY_004 (the run goes on without memory)."""
    try:
        vectors = embedder.embed(list(texts))
    except Exception as exc:
        raise MemoryBackendError(f"embedder {embedder.name!r} failed: {exc}",
                                 code="MEMORY_004", recoverable=True) from exc
    widths = {len(v) for v in vectors}
    if len(vectors) != len(texts) or widths - {dims}:
        got = ", ".join(str(w) for w in sorted(widths)) or "no"
        raise MemoryBackendError(f"embedder {embedder.name!r} returned {got} dims, expected "
                                 f"{dims}", code="MEMORY_004")
    return vectors


def preload_embedder(config: Any, registries: Any, *,
                     import_here: bool = False) -> threading.Thread | None:
    """Start loading the configured embedder on a thread, when memory is on.

    Called as a run starts: loading a model (all-MiniLM's ~0.3 s of CPU) then overlaps with
    routing and planning instead of delaying retrieval; :func:`open_store` waits for it. Does
    nothing (None) when memory is off, or the config is unusable (the memory phases report
    that themselves).

    ``import_here``: first import, in the calling thread, the modules the embedder that will
    be tried first names in its optional ``preload_modules`` (minilm: numpy, onnxruntime,
    tokenizers). Imports hold the interpreter lock: made on the thread they would fight the
    caller's own start-up over it (measured: no gain at all), while what is left for the
    thread (reading, hashing, building the session) runs in native code beside the caller.
    The ``sigil orchestrate`` command does this as soon as it has its config: an offline run
    of the lead example 688 -> 611 ms (median of 15 interleaved pairs).

    Meanwhile the thread calls that embedder's optional ``prefetch()``: reading and checking
    what loading needs without the interpreter lock (minilm: its 23 MB model file and their
    checksums, ~35 ms), then waits for the caller's imports to end before loading (the same
    modules imported on two threads at once can deadlock on their import locks)."""
    from .embedders import choose, first_choice

    try:
        settings = MemorySettings.from_config(config)
        if not settings.enabled or not registries.registry("memory_backends"):
            return None
        embedders = registries.registry("embedders")
    except Exception:  # noqa: BLE001 - reported by the phase that uses memory
        return None
    first = first_choice(embedders, settings.embedder)
    imported = threading.Event()

    def load() -> None:
        prefetch = getattr(first, "prefetch", None)
        if callable(prefetch):
            try:
                prefetch()
            except Exception:  # noqa: BLE001, S110 - loading finds the same problem, reports it
                pass
        imported.wait()
        try:
            choose(embedders, settings.embedder)
        except Exception:  # noqa: BLE001, S110 - open_store chooses again and reports it
            pass

    # Not a daemon: a process that ends before the load does (a run answered by an intent
    # handler) waits for it at exit, instead of tearing a native runtime (onnxruntime)
    # down under a thread still building its session (the C++ runtime aborts).
    thread = threading.Thread(target=load, name="sigil-embedder-load", daemon=False)
    thread.start()
    try:
        if import_here:
            import importlib

            for module in getattr(first, "preload_modules", ()) or ():
                try:
                    importlib.import_module(module)
                except Exception:  # noqa: BLE001 - the load reports what is missing
                    break
    finally:
        imported.set()
    return thread


__all__ = ["DEFAULT_BACKEND", "HISTORY_COLUMNS", "EmbedderMismatch", "Hit", "MemoryBackend", "MemorySettings",
           "MemoryStore", "Record", "RememberOutcome", "embed_checked", "fill_vectors", "history_entries",
           "in_embedding_thread", "list_query", "open_store", "preload_embedder", "texts_to_embed"]
