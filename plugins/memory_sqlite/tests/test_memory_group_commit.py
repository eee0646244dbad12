"""Concurrent runs' extractions are written together (group commit), each call still getting
its own outcomes, its own session in the history, and its own error."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sigil_memory_sqlite import backend as sqlite_backend
from sigil_memory_sqlite.backend import SqliteBackend
from sigil_memory_sqlite.store import MemoryStore

from sigil_core import MemoryBackendError, MemoryItem
from sigil_core.memory.embedders import HashingEmbedder
from sigil_core.memory.testing import CountingEmbedder

FACTS = [
    "Acme Corp buys the enterprise plan",
    "Globex has 500 employees",
    "Acme Corp buys the enterprise plan",  # a second run learnt it too: merged, not new
    "Initech is based in Austin",
    "Globex is based in Springfield",
    "Umbrella wants 40 seats",
]


def fact(text: str) -> MemoryItem:
    return MemoryItem(content=text, memory_type="fact", confidence=0.8)


class GatedEmbedder(HashingEmbedder):
    """Holds its callers until ``n`` of them are embedding, then occupies the store's thread
    until ``gate`` is set, and lets them go: the ``n`` calls then queue for the store
    together, as the extractions of concurrent runs do."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.held = None
        self.barrier = threading.Barrier(n, action=self._occupy)

    def _occupy(self) -> None:
        self.held = sqlite_backend._executor().submit(self.gate.wait)

    def embed(self, texts):
        self.barrier.wait(timeout=10)
        return super().embed(texts)


async def _until_queued(queue, n: int) -> None:
    """Wait until ``n`` calls wait in ``queue`` for the store's thread."""
    for _ in range(1000):
        if len(queue.waiting) == n:
            break
        await asyncio.sleep(0.01)
    assert len(queue.waiting) == n


async def _queued_then_written(store, embedder, calls, trips=None):
    """Run ``calls`` so that they queue for the store together; ``trips`` (a list the test
    fills with the trips to the store's thread) is emptied once they have all queued."""
    tasks = [asyncio.ensure_future(c()) for c in calls]
    await _until_queued(sqlite_backend._write_queue(store.store), len(calls))
    if trips is not None:
        trips.clear()
    embedder.gate.set()
    embedder.held.result(timeout=10)
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_concurrent_calls_share_one_transaction_and_keep_their_own_outcomes(
        tmp_path, monkeypatch):
    embedder = GatedEmbedder(len(FACTS))
    store = await SqliteBackend().open(None, embedder, location=str(tmp_path / "m.db"))
    groups = []
    real = type(store.store).remember_groups

    def spy(self, batch):
        groups.append(len(batch))
        return real(self, batch)

    monkeypatch.setattr(type(store.store), "remember_groups", spy)
    trips: list[str] = []
    real_trip = sqlite_backend._write_queued

    def trip(*args):
        trips.append("_write_queued")
        return real_trip(*args)

    monkeypatch.setattr(sqlite_backend, "_write_queued", trip)
    results = await _queued_then_written(store, embedder, [
        (lambda i=i, text=text: store.remember_many([fact(text)], session_id=f"sess_{i}"))
        for i, text in enumerate(FACTS)], trips)
    assert groups == [len(FACTS)]  # one write for all six calls
    # ... in one trip to the store's thread once they were all queued: the calls behind the
    # first one ride along, instead of each taking a trip that finds its facts written
    assert trips == ["_write_queued"]
    assert [[o.item.content for o in r] for r in results] == [[t] for t in FACTS]
    # calls 0 and 2 bring the same fact: whichever was queued first created it (the threads
    # that embedded them finish in any order), the other one is merged into it
    actions = [r[0].action for r in results]
    assert sorted([actions[0], actions[2]]) == ["merged", "new"]
    assert [actions[n] for n in (1, 3, 4, 5)] == ["new"] * 4
    assert await store.count() == 5
    # each fact's history names the session of the call that brought it
    acme = results[0][0].item.id
    assert results[2][0].item.id == acme
    first, then = ("sess_0", "sess_2") if actions[0] == "new" else ("sess_2", "sess_0")
    assert [(h["event"], h["session_id"]) for h in await store.history(acme)] \
        == [("created", first), ("seen", then)]
    assert (await store.history(results[3][0].item.id))[0]["session_id"] == "sess_3"
    await store.close()


async def test_the_same_facts_one_call_after_another_end_the_same(tmp_path):
    """The group is what the calls would have made one after another."""
    ends = []
    for grouped in (True, False):
        embedder = GatedEmbedder(len(FACTS)) if grouped else HashingEmbedder()
        store = await SqliteBackend().open(None, embedder,
                                           location=str(tmp_path / f"{grouped}.db"))
        calls = [(lambda text=text, store=store: store.remember_many([fact(text)])) for text in FACTS]
        if grouped:
            await _queued_then_written(store, embedder, calls)
        else:
            for call in calls:
                await call()
        ends.append(sorted((i.content, i.times_seen, i.confidence)
                           for i in await store.list()))
        await store.close()
    assert ends[0] == ends[1]


async def test_a_call_that_fails_fails_alone(tmp_path, monkeypatch):
    embedder = GatedEmbedder(3)
    store = await SqliteBackend().open(None, embedder, location=str(tmp_path / "m.db"))
    real = type(store.store).remember_groups

    def failing(self, batch):
        if any("poison" in i.content for items, _, _ in batch for i in items):
            # as a failed write raises it (the store's driver: sqlite3 or its build's)
            raise self.db.module.OperationalError("disk I/O error")
        return real(self, batch)

    monkeypatch.setattr(type(store.store), "remember_groups", failing)
    texts = ["Acme Corp buys the enterprise plan", "poison pill", "Globex has 500 employees"]
    results = await _queued_then_written(store, embedder, [
        (lambda text=text: store.remember_many([fact(text)])) for text in texts])
    assert [o.item.content for o in results[0]] == [texts[0]]
    assert isinstance(results[1], MemoryBackendError)  # translated, as any store error is
    assert [o.item.content for o in results[2]] == [texts[2]]
    assert await store.count() == 2
    await store.close()


async def test_a_lone_call_is_written_at_once(tmp_path):
    store = await SqliteBackend().open(None, HashingEmbedder(), location=str(tmp_path / "m.db"))
    outcome = await asyncio.wait_for(store.remember_many([fact(FACTS[0])]), timeout=10)
    assert outcome[0].action == "new"
    assert not sqlite_backend._write_queue(store.store).waiting
    with pytest.raises(ValueError):
        await store.remember_many([MemoryItem(content="", memory_type="fact")])
    await store.close()


async def test_a_fact_stored_word_for_word_is_merged_without_running_the_model(tmp_path):
    embedder = CountingEmbedder()
    store = await SqliteBackend().open(None, embedder, location=str(tmp_path / "m.db"))
    first = (await store.remember_many([fact(FACTS[0])]))[0]
    assert embedder.texts == [FACTS[0]]
    again = await store.remember_many([fact(FACTS[0]), fact(FACTS[1])])
    assert [o.action for o in again] == ["merged", "new"]
    assert again[0].item.id == first.item.id
    assert embedder.texts == [FACTS[0], FACTS[1]]  # only the new text was embedded
    # the same words written otherwise are another text: embedded, then merged by consolidation
    other = FACTS[0].lower() + "!"
    assert (await store.remember_many([fact(other)]))[0].action == "merged"
    assert embedder.texts[-1] == other
    # what is stored still answers as before
    assert (await store.search(FACTS[0]))[0].item.id == first.item.id
    await store.close()
    # the synchronous store (sigil memory commands) does the same
    with MemoryStore(tmp_path / "m.db", embedder) as sync:
        embedder.texts.clear()
        assert sync.remember_many([fact(FACTS[1])])[0].action == "merged"
        assert embedder.texts == []


async def test_a_run_stopped_before_its_turn_leaves_nothing_to_write(tmp_path):
    embedder = GatedEmbedder(1)  # the store's thread is taken once the fact is embedded
    store = await SqliteBackend().open(None, embedder, location=str(tmp_path / "m.db"))
    task = asyncio.ensure_future(store.remember_many([fact(FACTS[1])]))
    queue = sqlite_backend._write_queue(store.store)
    try:
        for _ in range(1000):
            if queue.waiting:
                break
            await asyncio.sleep(0.01)
        assert len(queue.waiting) == 1
        task.cancel()  # Ctrl-C while it waits its turn
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not queue.waiting
    finally:
        embedder.gate.set()
        embedder.held.result(timeout=10)
    assert (await store.remember_many([fact(FACTS[0])]))[0].action == "new"
    assert [i.content for i in await store.list()] == [FACTS[0]]
    await store.close()


def _trips(store, monkeypatch) -> list[str]:
    """The trips to the store's thread from now on, by what each ran (counted where they
    run: a call queued while the trip before it is ending rides on the one that trip
    schedules)."""
    trips: list[str] = []
    real = store._run

    async def counted(fn, *args, **kwargs):
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kwargs)

    def counted_trip(name, trip):
        def run(*args):
            trips.append(name)
            return trip(*args)
        return run

    monkeypatch.setattr(store, "_run", counted)
    monkeypatch.setattr(sqlite_backend, "_write_queued",
                        counted_trip("_write_queued", sqlite_backend._write_queued))
    monkeypatch.setattr(sqlite_backend, "_search_queued",
                        counted_trip("_search", sqlite_backend._search_queued))
    return trips


async def test_facts_stored_before_are_found_and_written_in_one_trip(tmp_path, monkeypatch):
    """Each trip to the store's thread waits behind whatever the event loop has queued (~80 ms
    a trip with 100 concurrent runs): facts all stored word for word before are looked up and
    written in one trip; a new fact takes two, the model embedding it in between on an
    embedding thread, never on the store's."""
    embedder = CountingEmbedder()
    store = await SqliteBackend().open(None, embedder, location=str(tmp_path / "m.db"))
    first = (await store.remember_many([fact(FACTS[0])]))[0]
    trips = _trips(store, monkeypatch)
    embedder.texts.clear()
    again = await store.remember_many([fact(FACTS[0])], session_id="sess_again")
    assert [(o.action, o.item.id) for o in again] == [("merged", first.item.id)]
    assert trips == ["_write_queued"] and embedder.texts == []
    mixed = await store.remember_many([fact(FACTS[0]), fact(FACTS[1])])
    assert [o.action for o in mixed] == ["merged", "new"]
    assert trips == ["_write_queued"] * 3
    assert embedder.texts == [FACTS[1]]
    assert not embedder.threads[-1].startswith("sigil-memory-sqlite")
    history = await store.history(first.item.id)
    assert "sess_again" in {h.get("session_id") for h in history}
    await store.close()


async def test_a_search_brings_the_categories_the_retrieval_asks_for_next(tmp_path,
                                                                          monkeypatch):
    store = await SqliteBackend().open(None, HashingEmbedder(), location=str(tmp_path / "m.db"))
    await store.remember_many([
        MemoryItem(content="Acme Corp buys the enterprise plan", memory_type="fact",
                   confidence=0.8, category="sales"),
        MemoryItem(content="The invoices go out on the first", memory_type="fact",
                   confidence=0.8, category="billing")])
    task = "Qualify this lead from Acme Corp, and check its billing"
    trips = _trips(store, monkeypatch)
    hits = await store.search(task)
    categories = await store.relevant_categories(task, hits)
    assert trips == ["_search"]  # one trip for both
    assert categories == store.store.relevant_categories(task, hits)
    assert set(categories) == {"sales", "billing"}
    # Asked again (no search in between), it reads them again: what changed counts.
    await store.remember_many([MemoryItem(content="Billing runs weekly", memory_type="fact",
                                          confidence=0.8, category="billing_ops")])
    assert "billing_ops" in await store.relevant_categories("billing ops", [])
    await store.close()


async def test_concurrent_searches_share_one_trip_and_keep_their_own_answers(tmp_path,
                                                                            monkeypatch):
    """The retrievals of concurrent runs queue for the store's thread together: one trip
    answers them all, in one read transaction that reads the meta table once, and each
    caller gets its own hits (what it would get alone) or its own error."""
    store = await SqliteBackend().open(None, HashingEmbedder(), location=str(tmp_path / "m.db"))
    await store.remember_many([
        MemoryItem(content=text, memory_type="fact", confidence=0.8, category=category)
        for text, category in [(FACTS[0], "sales"), (FACTS[1], "companies"),
                               (FACTS[3], "companies"), (FACTS[5], "sales")]])
    queries = ["Acme enterprise plan", "Globex employees", "Initech Austin", "Umbrella seats"]
    alone = [await store.search(q) for q in queries]
    categories = store.store.categories()
    broken = "this one fails"
    real_search = type(store.store).search

    def search(self, text, *args, **kwargs):
        if text == broken:
            raise RuntimeError("a broken index")
        return real_search(self, text, *args, **kwargs)

    monkeypatch.setattr(type(store.store), "search", search)
    gate = threading.Event()
    held = sqlite_backend._executor().submit(gate.wait)  # the thread is busy: they queue
    trips = _trips(store, monkeypatch)
    statements: list[str] = []
    store.store.db.conn.set_trace_callback(statements.append)
    tasks = [asyncio.ensure_future(store.search(q)) for q in [*queries, broken]]
    await _until_queued(sqlite_backend._search_queue(store.store), len(tasks))
    gate.set()
    held.result(timeout=10)
    *answers, failed = await asyncio.gather(*tasks, return_exceptions=True)
    store.store.db.conn.set_trace_callback(None)
    assert trips == ["_search"]
    assert [[h.item.id for h in a] for a in answers] == [[h.item.id for h in a] for a in alone]
    assert isinstance(failed, RuntimeError)
    assert sum("from meta" in s for s in statements) == 1
    assert statements[0].strip().lower() == "begin" and statements[-1].lower() == "commit"
    # each handle keeps the category counts its trip read, for relevant_categories
    assert store._categories == categories
    await store.close()


def test_a_groups_lookups_before_its_write_read_the_meta_table_once(tmp_path):
    """Each statement on the store's thread gives the GIL away and waits to have it back
    (behind the event loop's thread when runs are busy): the related facts of a group are
    looked up in one read transaction, the index's bookkeeping read once."""
    with MemoryStore(tmp_path / "m.db", HashingEmbedder()) as store:
        store.remember_many([fact(text) for text in FACTS[:2]])
        statements: list[str] = []
        store.db.conn.set_trace_callback(statements.append)
        items = [store._validated(fact(text)) for text in FACTS[2:]]
        store.remember_groups([([i], store.embed([i.content]), None) for i in items])
        store.db.conn.set_trace_callback(None)
    before = statements[: statements.index("begin immediate")]
    assert before[0] == "begin" and before[-1] == "commit"
    assert [s for s in before if " from meta" in s] == ["select key, value from meta"]


def _scripted(content: str, *, provider: str | None = "offline", confidence: float = 0.6,
              **fields) -> MemoryItem:
    return MemoryItem(content=content, memory_type="fact", confidence=confidence,
                      provider=provider, model=f"{provider}:m" if provider else None, **fields)


#: One group meeting every way a fact meets what is there: the same fact again and again
#: (merged by content), in other words (merged by similarity or subject), a real model finding
#: the offline model's fact, a correction replacing a fact merged earlier in the group.
SCRIPT = [
    _scripted("Acme Corp buys the enterprise plan"),
    _scripted("Acme Corp buys the enterprise plan", confidence=0.9),
    _scripted("Acme Corp buys the enterprise plan", provider="anthropic"),
    _scripted("Acme Corp buys the enterprise plan"),
    _scripted("the enterprise plan Acme Corp buys"),
    _scripted("Globex has 500 employees", subject="Globex", attribute="headcount"),
    _scripted("Globex has 500 employees", subject="Globex", attribute="headcount"),
    _scripted("Globex employs 500 people in all", subject="Globex", attribute="headcount"),
    _scripted("Globex has 500 employees", subject="Globex", attribute="headcount"),
    _scripted("Globex has 800 employees", subject="Globex", attribute="headcount"),
    _scripted("Globex has 800 employees", subject="Globex", attribute="headcount"),
    _scripted("Initech is based in Austin"),
    _scripted("Initech is not based in Austin"),
    _scripted("Initech is not based in Austin"),
]


def _end_state(store: MemoryStore) -> list[tuple]:
    rows = store.db.query("select content, times_seen, round(confidence, 6), status, provider, "
                          "(select content from items s where s.id = i.superseded_by) "
                          "from items i order by content, status")
    history = store.db.query("select i.content, h.event, round(h.confidence, 6) from "
                             "item_history h join items i on i.id = h.item_id "
                             "order by h.rowid")
    return [*map(tuple, rows), *map(tuple, history)]


@pytest.mark.parametrize("split", [1, 3, len(SCRIPT)])
def test_a_group_ends_as_the_same_facts_one_call_after_another(tmp_path, split):
    """Merges in a group are written once at its end (_Deferred): whatever meets a fact
    merged earlier in the group (its duplicate, a paraphrase, a correction superseding it,
    a real model's confirmation) sees it as it would be in the file, and the file ends as
    with one call per fact."""
    ends = []
    for grouped in (True, False):
        with MemoryStore(tmp_path / f"{grouped}{split}.db", HashingEmbedder()) as store:
            store.remember_many([_scripted("Initech has 40 employees")])
            items = [store._validated(i) for i in SCRIPT]
            vectors = store.embed([i.content for i in items])
            outcomes = []
            if grouped:  # in groups of `split` calls, several facts a call
                calls = [(items[n:n + 2], vectors[n:n + 2], f"sess_{n}")
                         for n in range(0, len(items), 2)]
                for start in range(0, len(calls), split):
                    for out in store.remember_groups(calls[start:start + split]):
                        outcomes += out
            else:
                for n, item in enumerate(items):
                    outcomes += store.remember_many([item], session_id=f"sess_{n - n % 2}",
                                                    vectors=vectors[n:n + 1])
            # what each call was told, and what the file says in the end
            ends.append([[(o.action, o.item.content, o.item.times_seen, o.item.confidence,
                           o.item.provider, o.previous.content if o.previous else None)
                          for o in outcomes], _end_state(store)])
    assert ends[0][0] == ends[1][0]
    assert ends[0][1] == ends[1][1]
    ends = [end[1] for end in ends]
    by_content = {row[0]: row for row in ends[0] if len(row) == 6 and row[3] == "active"}
    assert by_content["Acme Corp buys the enterprise plan"][1:5:3] == (5, "anthropic")
    assert "Globex has 800 employees" in by_content and "Initech is not based in Austin" in by_content


async def test_a_search_stopped_before_its_turn_leaves_the_queue(tmp_path):
    store = await SqliteBackend().open(None, HashingEmbedder(), location=str(tmp_path / "m.db"))
    await store.remember_many([fact(FACTS[0])])
    gate = threading.Event()
    held = sqlite_backend._executor().submit(gate.wait)  # the thread is busy: it queues
    try:
        stopped = asyncio.ensure_future(store.search("Acme enterprise plan"))
        kept = asyncio.ensure_future(store.search("Acme enterprise plan"))
        queue = sqlite_backend._search_queue(store.store)
        await _until_queued(queue, 2)
        stopped.cancel()  # Ctrl-C while it waits its turn
        with pytest.raises(asyncio.CancelledError):
            await stopped
        assert len(queue.waiting) == 1
    finally:
        gate.set()
        held.result(timeout=10)
    assert [h.item.content for h in await kept] == [FACTS[0]]
    await store.close()


async def test_a_search_trip_that_fails_whole_is_each_callers_memory_error(tmp_path,
                                                                          monkeypatch):
    """The read transaction itself fails (the file went bad under the store): every search
    of the trip gets the store's translated error, none waits forever."""
    store = await SqliteBackend().open(None, HashingEmbedder(), location=str(tmp_path / "m.db"))
    db = store.store.db

    def broken():
        raise db.module.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(db, "reading", broken)
    outcomes = await asyncio.wait_for(asyncio.gather(
        *(store.search(q) for q in ("Acme", "Globex")), return_exceptions=True), timeout=10)
    assert all(isinstance(o, MemoryBackendError) for o in outcomes), outcomes
    monkeypatch.undo()
    assert await store.search("Acme") == []  # the next trip reads again
    await store.close()
