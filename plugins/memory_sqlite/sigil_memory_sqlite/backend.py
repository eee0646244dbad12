"""This plugin as a :class:`sigil_core.memory.MemoryBackend` (``memory.backend: sqlite``).

The store is synchronous (sqlite3); :class:`SqliteStore` runs each call on one worker thread of
its own, so the connection is only ever used from the thread that opened it and the event loop
never blocks on the file.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sigil_core import MemoryItem
from sigil_core.memory import (
    Hit,
    Record,
    RememberOutcome,
    fill_vectors,
    in_embedding_thread,
    texts_to_embed,
)
from sigil_core.memory.phases import relevant_categories

#: ``list`` inside the store classes is their method: annotations there use this name.
List = list

T = TypeVar("T")
#: Rows read back per query when copying the store out (``records``).
CHUNK = 2000


#: This process's memory thread: (pid, pool); a forked child has no threads and makes its own.
_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _executor() -> ThreadPoolExecutor:
    """The process's one memory thread, shared by every store it opens.

    Every run opens the store (once, see sigil_core.memory.phases.run_store), so do commands,
    and a process may run many runs at once: a thread per open cost ~4 ms each to start. One thread also serialises
    this process's use of the file, which SQLite's writer lock would do anyway. (Embedding
    runs on sigil_core.memory's embedding threads, not here.)
    """
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=1,
                                                 thread_name_prefix="sigil-memory-sqlite"))
    return _POOL[1]


class _Shared:
    """One open :class:`MemoryStore` (``opened`` resolves to it) and how many
    :class:`SqliteStore` handles use it."""

    def __init__(self, key: tuple[int, str, str], opened: asyncio.Future[Any]) -> None:
        self.key = key
        self.opened = opened
        self.ident: tuple[int, int] | None = None
        self.users = 1


#: The stores open in this process, by (pid, path, embedder name). Runs that overlap in one
#: process (``sigil batch``, an application running many orchestrations) share the open file
#: instead of each paying for the connection, the extension load and the schema checks
#: (about 4 ms of CPU per open here); the last handle closed closes it, so nothing stays open
#: between runs that do not overlap. Runs that open it while another is still opening it wait
#: for that open.
_SHARED: dict[tuple[int, str, str], _Shared] = {}


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class _Queued:
    """One remember_many call waiting for the store's thread: its facts (and their vectors,
    or None when the store is to find them), then its outcomes, the error of its write, or
    the texts the model must embed first (``missing``; ``known``: the vectors found).
    ``done`` resolves, on the caller's event loop, once the store's thread has handled it."""

    __slots__ = ("done", "error", "items", "known", "missing", "outcomes", "session_id",
                 "vectors")

    def __init__(self, items: list[MemoryItem], vectors: Any, session_id: str | None) -> None:
        self.items = items
        self.vectors = vectors
        self.session_id = session_id
        self.outcomes: list[RememberOutcome] | None = None
        self.error: BaseException | None = None
        self.missing: list[str] | None = None
        self.known: dict[tuple[str, str], Any] | None = None
        self.done: asyncio.Future[None] | None = None

    def fail(self, exc: BaseException) -> None:
        """The trip failed as a whole: ``exc`` is this call's error, unless it was answered."""
        if self.outcomes is None and self.missing is None and self.error is None:
            self.error = exc


class _Search:
    """One search waiting for the store's thread (see SqliteStore.search): then its hits
    and the category counts of the store, or its error."""

    __slots__ = ("categories", "done", "error", "hits", "k", "min_similarity", "text",
                 "vector")

    def __init__(self, text: str, k: int, min_similarity: float | None, vector: Any) -> None:
        self.text, self.k, self.min_similarity, self.vector = text, k, min_similarity, vector
        self.hits: List[Hit] | None = None
        self.categories: List[tuple[str, int]] | None = None
        self.error: BaseException | None = None
        self.done: asyncio.Future[None] | None = None

    def fail(self, exc: BaseException) -> None:
        if self.hits is None and self.error is None:
            self.error = exc


class _TripQueue:
    """The calls waiting for one store's thread, and whether a trip there is already due
    for them (``scheduled``: then a new call only joins the queue). ``kind``: what the
    trip does, "write" (:func:`_write_queued`) or "search" (:func:`_search_queued`)."""

    __slots__ = ("kind", "lock", "scheduled", "waiting")

    def __init__(self, kind: str = "write") -> None:
        self.kind = kind
        self.lock = threading.Lock()
        self.waiting: list[Any] = []
        self.scheduled = False


#: Each open store's calls waiting for its thread, by kind (see SqliteStore.remember_many
#: and SqliteStore.search).
_QUEUES: weakref.WeakKeyDictionary[Any, dict[str, _TripQueue]] = weakref.WeakKeyDictionary()
_QUEUES_LOCK = threading.Lock()


def _write_queue(store: Any, kind: str = "write") -> _TripQueue:
    with _QUEUES_LOCK:
        queues = _QUEUES.get(store)
        if queues is None:
            queues = _QUEUES[store] = {}
        queue = queues.get(kind)
        if queue is None:
            queue = queues[kind] = _TripQueue(kind)
        return queue


def _search_queue(store: Any) -> _TripQueue:
    return _write_queue(store, "search")


def _with_vectors(store: Any, batch: list[_Queued]) -> list[_Queued]:
    """The calls of ``batch`` ready to write: those whose facts' vectors are known. For the
    calls that came without vectors, the stored vector of each fact stored word for word is
    found (one query for all of them); a call with facts the model must embed first gets
    ``missing`` instead, and is written on its next trip."""
    unresolved = [q for q in batch if q.vectors is None]
    if unresolved:
        try:
            known = store.stored_vectors([i for q in unresolved for i in q.items])
        except Exception as exc:  # noqa: BLE001 - raised by each caller
            for q in unresolved:
                q.error = exc
        else:
            for q in unresolved:
                missing = texts_to_embed(q.items, known)
                if missing:
                    q.missing, q.known = missing, known
                else:
                    q.vectors = fill_vectors(q.items, known, None, store.index.dimensions)
    return [q for q in batch if q.vectors is not None and q.error is None]


def _write_queued(store: Any, queue: _TripQueue, executor: ThreadPoolExecutor) -> None:
    """On the store's thread: write every call queued by now (one transaction, see
    MemoryStore.remember_groups), then wake their callers, one callback per event loop.

    One trip for all the calls queued together, not one per call whose trip then finds its
    call written already: with 100 concurrent runs those empty trips each waited for the
    GIL behind the event loop, and their wake-ups one by one held up the last runs' ends.
    Calls that arrive meanwhile get the next trip, queued behind whatever else waits for
    the thread (a search is not held up by a stream of writes)."""
    _take_trip(store, queue, executor, _write_batch)


def _search_queued(store: Any, queue: _TripQueue, executor: ThreadPoolExecutor) -> None:
    """On the store's thread: every search queued by now (see :func:`_search_batch`), then
    wake their callers, one callback per event loop. With 100 concurrent runs, a trip per
    search (each its own executor item and wake-up, each reading the index's bookkeeping
    and the category counts again) left the last runs' memory late for their first step."""
    _take_trip(store, queue, executor, _search_batch)


def _take_trip(store: Any, queue: _TripQueue, executor: ThreadPoolExecutor,
               work: Callable[[Any, list[Any]], None]) -> None:
    with queue.lock:
        batch, queue.waiting = queue.waiting, []
    try:
        work(store, batch)
    except BaseException as exc:  # noqa: BLE001 - each caller raises it, nobody is left waiting
        for q in batch:
            q.fail(exc)
    finally:
        _wake(batch)
        with queue.lock:
            queue.scheduled = bool(queue.waiting)
        if queue.scheduled:
            _schedule(store, queue, executor)


def _schedule(store: Any, queue: _TripQueue, executor: ThreadPoolExecutor) -> None:
    """A trip to the store's thread for the queued calls; one that cannot be made (the
    interpreter is shutting down) fails them instead of leaving them waiting."""
    try:
        executor.submit(_write_queued if queue.kind == "write" else _search_queued,
                        store, queue, executor)
    except RuntimeError as exc:
        with queue.lock:
            batch, queue.waiting, queue.scheduled = queue.waiting, [], False
        for q in batch:
            q.error = exc
        _wake(batch)


def _wake(batch: list[_Queued]) -> None:
    loops: dict[Any, list[asyncio.Future[None]]] = {}
    for q in batch:
        if q.done is not None:
            loops.setdefault(q.done.get_loop(), []).append(q.done)
    for loop, futures in loops.items():
        try:
            loop.call_soon_threadsafe(_settle, futures)
        except RuntimeError:  # that loop is closed: nobody waits there any more
            pass


def _settle(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():  # a caller stopped meanwhile has cancelled its own
            future.set_result(None)


def _search_batch(store: Any, batch: list[_Search]) -> None:
    """The searches of one trip, in one read transaction: they see one state of the file,
    the index's bookkeeping is read once (Database.reading), and so are the category counts
    that each retrieval asks for next (relevant_categories)."""
    counts: List[tuple[str, int]] | None = None
    with store.db.reading():
        for q in batch:
            try:
                q.hits = store.search(q.text, q.k, min_similarity=q.min_similarity,
                                      vector=q.vector)
                if counts is None:
                    counts = store.categories()
                q.categories = list(counts)
            except Exception as exc:  # noqa: BLE001 - raised by its own caller
                q.error = exc


def _write_batch(store: Any, batch: list[_Queued]) -> None:
    batch = _with_vectors(store, batch)
    if len(batch) > 1:
        try:
            results = store.remember_groups([(q.items, q.vectors, q.session_id) for q in batch])
        except Exception:  # noqa: BLE001, S110 - one call's facts may be the cause: alone below
            pass
        else:
            for q, outcomes in zip(batch, results, strict=True):
                q.outcomes = outcomes
            return
    for q in batch:
        try:
            q.outcomes = store.remember_groups([(q.items, q.vectors, q.session_id)])[0]
        except BaseException as exc:  # noqa: BLE001 - raised by its own caller
            q.error = exc


class SqliteStore:
    """The async face of :class:`~sigil_memory_sqlite.store.MemoryStore`."""

    def __init__(self, executor: ThreadPoolExecutor, store: Any,
                 shared: _Shared | None = None) -> None:
        self._executor = executor
        self.store = store
        self.location = str(store.path)
        self.embedder = store.embedder
        self._shared = shared
        #: Category counts read with the last search, for relevant_categories().
        self._categories: List[tuple[str, int]] | None = None

    @classmethod
    async def open(cls, config: Any, embedder: Any, *, check_embedder: bool = True,
                   location: str | None = None) -> SqliteStore:
        from .store import MemoryStore, default_path

        executor = _executor()
        path = location or default_path(config)
        loop = asyncio.get_running_loop()

        async def open_own() -> Any:
            return await loop.run_in_executor(executor, functools.partial(
                MemoryStore, path, embedder, check_embedder=check_embedder))

        if not check_embedder:  # commands that rebind the embedder get a store of their own
            return cls(executor, await open_own())
        key = (os.getpid(), os.path.abspath(os.fspath(path)), str(embedder.name))
        entry = _SHARED.get(key)
        if entry is not None:
            shared: Any = None
            try:
                shared = await asyncio.shield(entry.opened)
            except Exception:  # noqa: BLE001, S110 - that open failed: try one of our own below
                pass
            if shared is not None and shared.embedder is embedder \
                    and _identity(key[1]) == entry.ident and _SHARED.get(key) is entry:
                entry.users += 1
                return cls(executor, shared, entry)
            return cls(executor, await open_own())
        entry = _SHARED[key] = _Shared(key, loop.create_future())
        try:
            store = await open_own()
        except BaseException as exc:
            del _SHARED[key]
            entry.opened.set_exception(exc if isinstance(exc, Exception)
                                       else RuntimeError("the open was cancelled"))
            entry.opened.exception()  # retrieved: no "never retrieved" warning when none wait
            raise
        entry.ident = _identity(key[1])
        entry.opened.set_result(store)
        return cls(executor, store, entry)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor,
                                              functools.partial(fn, *args, **kwargs))
        except Exception as exc:
            translated = self._translated(exc)
            if translated is exc:
                raise
            raise translated from None

    def _raise(self, exc: BaseException) -> None:
        """Raise a queued call's error (a database error translated, see _translated)."""
        translated = self._translated(exc)
        if translated is exc:
            raise exc
        raise translated from None

    def _translated(self, exc: BaseException) -> BaseException:
        """A database error the store did not translate (an I/O error mid-query) as a
        recoverable memory error: the run goes on without memory instead of failing."""
        db = getattr(self.store, "db", None)
        if db is not None and isinstance(exc, db.module.DatabaseError):
            return db._translate(exc)
        return exc

    async def _embedded(self, texts: Sequence[str]) -> Any:
        """The texts' embeddings, computed on the embedding threads rather than on the store's
        one thread: the model releases the GIL, so one run's embedding overlaps other runs'
        database work instead of queueing behind it (100 concurrent runs share that thread)."""
        return await in_embedding_thread(self.store.embed, list(texts))

    async def search(self, text: str, k: int = 20, *,
                     min_similarity: float | None = None) -> List[Hit]:
        """Hybrid search. Searches that wait for the store's thread at the same time (the
        retrievals of concurrent runs) are answered in one trip there (_search_queued), which
        also brings the category counts the retrieval asks for next (relevant_categories):
        each trip waits its turn behind everything the event loop has queued."""
        vector = (await self._embedded([text]))[0]
        mine = _Search(text, k, min_similarity, vector)
        await self._queued(_search_queue(self.store), mine, self._search_trip)
        if mine.error is not None:
            self._raise(mine.error)
        assert mine.hits is not None
        self._categories = mine.categories
        return mine.hits

    async def relevant_categories(self, task: str, hits: Sequence[Hit]) -> List[str]:
        counts, self._categories = self._categories, None
        if counts is None:  # not after a search of this handle
            return await self._run(self.store.relevant_categories, task, hits)
        return relevant_categories(task, hits, counts)

    async def remember_many(self, items: Sequence[MemoryItem], *,
                            session_id: str | None = None) -> List[RememberOutcome]:
        """Store the facts. Calls that wait for the store's thread at the same time (the
        extractions of concurrent runs) are written in one transaction (group commit, as
        the embedder batches concurrent calls): 100 concurrent runs spent ~0.4 s in that one
        thread writing one fact each, a transaction, a side-file update and a vector-index
        refresh apiece."""
        checked = [self.store._validated(i) for i in items]
        if not checked:
            return []
        # One trip to the store's thread finds the stored vectors and writes, when every fact
        # was stored word for word before (each trip waits behind what the event loop has
        # queued: ~80 ms with 100 concurrent runs); else the model embeds the rest here, off
        # that thread, and a second trip writes.
        mine = _Queued(checked, None, session_id)
        await self._queued_write(mine)
        if mine.missing is not None:
            fresh = await self._embedded(mine.missing)
            mine.vectors = fill_vectors(checked, mine.known or {}, fresh,
                                        self.store.index.dimensions)
            mine.missing = mine.known = None
            await self._queued_write(mine)
        if mine.error is not None:
            self._raise(mine.error)
        assert mine.outcomes is not None
        return mine.outcomes

    async def _queued_write(self, mine: _Queued) -> None:
        await self._queued(_write_queue(self.store), mine, self._trip)

    async def _queued(self, queue: _TripQueue, mine: Any,
                      trip: Callable[[_TripQueue], None]) -> None:
        """Queue the call and wait for the store's thread to handle it: the first call
        queued schedules the trip, the ones queued before it starts ride along (see
        _write_queued, _search_queued)."""
        mine.done = asyncio.get_running_loop().create_future()
        with queue.lock:
            queue.waiting.append(mine)
            scheduled = not queue.scheduled
            queue.scheduled = True
        if scheduled:
            trip(queue)
        try:
            await mine.done
        except asyncio.CancelledError:
            # The run was stopped before its turn: nobody handles its call later either (a
            # trip already under way finishes, as any started write does).
            with queue.lock:
                if mine in queue.waiting:
                    queue.waiting.remove(mine)
            raise
        finally:
            mine.done = None

    def _trip(self, queue: _TripQueue) -> None:
        _schedule(self.store, queue, self._executor)

    def _search_trip(self, queue: _TripQueue) -> None:
        _schedule(self.store, queue, self._executor)

    async def get(self, item_id: str) -> MemoryItem | None:
        return await self._run(self.store.get, item_id)

    async def status(self, item_id: str) -> tuple[str, str | None] | None:
        return await self._run(self.store.status, item_id)

    async def history(self, item_id: str) -> List[dict[str, Any]]:
        return await self._run(self.store.history, item_id)

    async def list(self, *, memory_type: str | None = None, category: str | None = None,
                   include_superseded: bool = False, limit: int | None = None) -> List[MemoryItem]:
        return await self._run(self.store.list, memory_type=memory_type, category=category,
                               include_superseded=include_superseded, limit=limit)

    async def forget(self, item_id: str) -> bool:
        return await self._run(self.store.forget, item_id)

    async def count(self) -> int:
        return await self._run(self.store.count)

    async def stats(self) -> dict[str, Any]:
        from .db import driver_description

        data = await self._run(self.store.stats)
        data["backend"] = "sqlite"
        data["location"] = data.pop("path", self.location)
        data["driver"] = driver_description()
        return data

    async def records(self) -> AsyncIterator[Record]:
        last = 0
        while True:
            chunk = await self._run(self._read_records, last)
            if not chunk:
                return
            for rowid, record in chunk:
                last = rowid
                yield record

    def _read_records(self, after: int) -> List[tuple[int, Record]]:
        import numpy as np

        from .store import ITEM_COLUMNS

        db = self.store.db
        rows = db.query(f"select {ITEM_COLUMNS} from items where rowid > ? order by rowid "
                        "limit ?", (after, CHUNK))
        if not rows:
            return []
        ids = ",".join(str(int(r[0])) for r in rows)
        vectors = {r[0]: np.frombuffer(r[1], dtype=np.float16).astype(np.float32).tolist()
                   for r in db.query(f"select rowid, embedding from item_embeddings "
                                     f"where rowid in ({ids})")}
        out = []
        for r in rows:
            out.append((r[0], Record(item=self.store._item(r), status=r[10], superseded_by=r[11],
                                     history=self.store.history(r[1]),
                                     vector=vectors.get(r[0]))))
        return out

    async def load(self, records: Sequence[Record]) -> int:
        return await self._run(self._load, list(records))

    def _load(self, records: List[Record]) -> int:
        import numpy as np

        from .db import Database
        from .store import content_hash

        store = self.store
        dims = store.index.dimensions

        def write(conn: Any) -> int:
            taken = {r[0] for r in conn.execute(
                "select id from items where id in ({})".format(",".join("?" * len(records))),
                [r.item.id for r in records])} if records else set()
            n = 0
            indexed: List[tuple[int, Any]] = []
            for rec in records:
                it = rec.item
                if it.id in taken:
                    continue
                cur = conn.execute(
                    "insert into items(id, content, content_hash, memory_type, category, "
                    "confidence, source_session_id, created_at, updated_at, times_seen, status, "
                    "superseded_by, provider, model, subject, attribute) "
                    "values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (it.id, it.content, content_hash(it.content), it.memory_type, it.category,
                     it.confidence, it.source_session_id, it.created_at, it.updated_at,
                     it.times_seen, rec.status, rec.superseded_by, it.provider, it.model,
                     it.subject, it.attribute))
                rowid = cur.lastrowid
                for h in rec.history:
                    conn.execute("insert into item_history(item_id, event, content, confidence, "
                                 "session_id, related_id, at) values (?,?,?,?,?,?,?)",
                                 (it.id, h.get("event"), h.get("content"), h.get("confidence"),
                                  h.get("session_id"), h.get("related_id"), h.get("at")))
                if it.category:
                    store._touch_category(conn, it.category, it.updated_at or it.created_at)
                if rec.status == "active":
                    conn.execute("insert into items_fts(rowid, content, category) "
                                 "values (?, ?, ?)", (rowid, it.content, it.category or ""))
                    if rec.vector is not None and len(rec.vector) == dims:
                        indexed.append((rowid, rec.vector))
                    else:  # another embedder's vector (or none): embed here
                        indexed.append((rowid, store.embed([it.content])[0]))
                n += 1
            if indexed:
                store.index.add(conn, [r for r, _ in indexed],
                                np.asarray([v for _, v in indexed], dtype=np.float32))
            Database.bump_generation(conn)
            return n

        n = store.db.write(write)
        store._maybe_recentre()
        return n

    async def reindex(self, embedder: Any) -> int:
        self._unshare()  # the file's embedder changes: later opens must not reuse this one
        n = await self._run(self.store.reindex, embedder)
        self.embedder = embedder
        return n

    def _unshare(self) -> None:
        """Later opens of the file no longer get this store."""
        entry = self._shared
        if entry is not None and _SHARED.get(entry.key) is entry:
            del _SHARED[entry.key]

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._shared is not None:
            self._shared.users -= 1
            if self._shared.users > 0:  # other runs still use it
                self._executor = None  # type: ignore[assignment]
                return
            self._unshare()
        try:
            await self._run(self.store.close)
        finally:
            self._executor = None  # type: ignore[assignment]


class SqliteBackend:
    name = "sqlite"
    description = "one SQLite file per host: sqlite-vec + FTS5"

    @staticmethod
    def where(config: Any, location: str | None = None) -> Any:
        """The database file: ``location``, else SIGIL_MEMORY_DB, memory.path, the default."""
        from pathlib import Path

        from .store import default_path

        return Path(location).expanduser() if location else default_path(config)

    def exists(self, config: Any, location: str | None = None) -> bool:
        """Whether the file is there (read-only commands create nothing when it is not)."""
        return bool(self.where(config, location).exists())

    async def open(self, config: Any, embedder: Any, *, check_embedder: bool = True,
                   location: str | None = None) -> SqliteStore:
        return await SqliteStore.open(config, embedder, check_embedder=check_embedder,
                                      location=location)
