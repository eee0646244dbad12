"""The behavioural test suite every memory backend passes, written once.

A backend's tests subclass :class:`MemoryStoreSuite` and define one fixture, ``stores``: an
async callable ``open(name="main", embedder=None, check_embedder=True) -> MemoryStore`` where
the same name opens the same (initially empty) store again; the fixture closes what it opened::

    class TestMyBackend(MemoryStoreSuite):
        @pytest.fixture
        async def stores(self, tmp_path):
            ...

pytest is imported here, so only test code imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from ..errors import MemoryBackendError
from ..model import MemoryItem
from . import EmbedderMismatch
from .embedders import HashingEmbedder


def fact(content: str, kind: str = "fact", confidence: float = 0.8,
         category: str | None = None) -> MemoryItem:
    return MemoryItem(content=content, memory_type=kind, confidence=confidence, category=category)


class SmallEmbedder:
    """Another embedder (other name, other dimensions) for mismatch and reindex tests."""

    name = "small"
    dimensions = 64
    priority = 0
    min_similarity = 0.0

    def embed(self, texts: list[str]) -> list[list[float]]:
        big = HashingEmbedder(64)
        return big.embed(texts)


class CountingEmbedder(HashingEmbedder):
    """The hashing embedder, noting each text it embeds (``texts``) and the thread each call
    ran on (``threads``): for tests of what reaches the model, and where it runs."""

    def __init__(self, dimensions: int = 384) -> None:
        super().__init__(dimensions)
        self.texts: list[str] = []
        self.threads: list[str] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import threading

        self.texts.extend(texts)
        self.threads.append(threading.current_thread().name)
        return super().embed(texts)


class MemoryStoreSuite:
    """Consolidation, supersession with history, hybrid search, forgetting, copying, embedders."""

    async def test_same_fact_twice_is_one_item_seen_twice(self, stores: Any) -> None:
        store = await stores()
        first = (await store.remember_many([fact("Acme Corp is based in Berlin", confidence=0.6)]))[0]
        again = (await store.remember_many([fact("acme corp is based in  BERLIN.")]))[0]
        assert (first.action, again.action) == ("new", "merged")
        assert again.item.id == first.item.id
        items = await store.list()
        assert len(items) == 1 and items[0].times_seen == 2 and items[0].confidence > 0.6
        assert [h["event"] for h in await store.history(first.item.id)] == ["created", "seen"]

    async def test_duplicates_inside_one_batch_are_merged(self, stores: Any) -> None:
        store = await stores()
        out = await store.remember_many([fact("Acme Corp prefers email communication",
                                              "preference"),
                                         fact("acme corp prefers EMAIL communication.",
                                              "preference"),
                                         fact("Globex is based in Paris")])
        assert [o.action for o in out] == ["new", "merged", "new"]
        assert await store.count() == 2

    async def test_restatements_inside_one_batch_are_one_item(self, stores: Any) -> None:
        # One extraction often states a fact twice in other words, or corrects itself: the
        # later fact meets the earlier one as it would across two batches.
        store = await stores()
        out = await store.remember_many([
            fact("Acme Corp prefers email communication", "preference"),
            fact("The client Acme Corp prefers email communication", "preference"),
            fact("Globex has a budget of 50000 dollars"),
            fact("Globex has a budget of 80000 dollars"),
        ])
        assert [o.action for o in out] == ["new", "merged", "new", "superseded"]
        assert out[1].item.id == out[0].item.id and out[1].item.times_seen == 2
        assert out[3].previous is not None and out[3].previous.id == out[2].item.id
        assert await store.count() == 2
        assert await store.status(out[2].item.id) == ("superseded", out[3].item.id)

    async def test_changed_number_supersedes_and_keeps_history(self, stores: Any) -> None:
        store = await stores()
        old = (await store.remember_many([fact("Acme Corp has a budget of 50000 dollars",
                                               category="acme")]))[0].item
        new = (await store.remember_many([fact("Acme Corp has a budget of 80000 dollars")]))[0]
        assert new.action == "superseded" and new.previous.id == old.id
        assert new.item.category == "acme"  # inherited from the fact it replaces
        assert await store.status(old.id) == ("superseded", new.item.id)
        assert [i.id for i in await store.list()] == [new.item.id]
        assert {i.id for i in await store.list(include_superseded=True)} == {old.id, new.item.id}
        assert [h["event"] for h in await store.history(old.id)] == ["created", "superseded"]
        assert (await store.history(new.item.id))[0]["related_id"] == old.id
        hits = await store.search("Acme Corp budget dollars")
        assert [h.item.id for h in hits] == [new.item.id]

    async def test_negation_and_swapped_preference_supersede(self, stores: Any) -> None:
        store = await stores()
        await store.remember_many([fact("Acme Corp is interested in the enterprise plan")])
        out = await store.remember_many([fact("Acme Corp is not interested in the enterprise plan")])
        assert out[0].action == "superseded"
        await store.remember_many([fact("John Smith prefers email contact", "preference")])
        out = await store.remember_many([fact("John Smith prefers phone contact", "preference")])
        assert out[0].action == "superseded"
        assert await store.count() == 2

    async def test_unrelated_facts_are_separate_items(self, stores: Any) -> None:
        store = await stores()
        out = await store.remember_many([fact("Acme Corp is based in Berlin"),
                                         fact("Initech sells printers to banks"),
                                         fact("Leads from referrals convert twice as often",
                                              "pattern")])
        assert [o.action for o in out] == ["new", "new", "new"]
        assert len({o.item.id for o in out}) == 3 and await store.count() == 3

    async def test_hybrid_search_ranks_the_matching_fact_first(self, stores: Any) -> None:
        store = await stores()
        await store.remember_many([
            fact("Acme Corp is based in Berlin", category="acme"),
            fact("Initech sells printers to banks", category="initech"),
            fact("Globex prefers quarterly billing", "preference", category="globex"),
            fact("Umbrella runs clinical trials in Ohio"),
        ])
        hits = await store.search("Where is Acme Corp based?", k=3)
        assert hits and hits[0].item.content == "Acme Corp is based in Berlin"
        assert hits[0].vector_rank == 1 and hits[0].text_rank == 1
        assert hits[0].similarity is not None and hits[0].score > 0
        assert hits[0].item.score == pytest.approx(hits[0].score, abs=1e-6)
        assert len(hits) <= 3
        assert (await store.relevant_categories("Where is Acme Corp based?", hits))[0] == "acme"
        assert await store.search("zzzz qqqq", k=5, min_similarity=0.99) == []

    async def test_search_on_an_empty_store_finds_nothing(self, stores: Any) -> None:
        store = await stores()
        assert await store.search("anything at all") == []
        assert await store.count() == 0

    async def test_forget_removes_item_history_and_index_entries(self, stores: Any) -> None:
        store = await stores()
        item = (await store.remember_many([fact("Acme Corp is based in Berlin")]))[0].item
        await store.remember_many([fact("Initech sells printers to banks")])
        assert await store.forget(item.id) is True
        assert await store.get(item.id) is None and await store.history(item.id) == []
        assert all(h.item.id != item.id for h in await store.search("Acme Corp Berlin"))
        assert await store.forget(item.id) is False
        # Forgotten, the same fact is new again.
        assert (await store.remember_many([fact("Acme Corp is based in Berlin")]))[0].action \
            == "new"

    async def test_list_filters_and_categories(self, stores: Any) -> None:
        store = await stores()
        await store.remember_many([fact("Acme Corp is based in Berlin", category="Acme "),
                                   fact("Acme prefers email", "preference", category="acme"),
                                   fact("Initech sells printers", category="initech")])
        assert {i.category for i in await store.list()} == {"acme", "initech"}
        prefs = await store.list(memory_type="preference")
        assert [i.content for i in prefs] == ["Acme prefers email"]
        assert len(await store.list(category="acme")) == 2
        assert len(await store.list(limit=1)) == 1
        stats = await store.stats()
        assert stats["active"] == 3 and stats["superseded"] == 0 and stats["vectors"] == 3
        assert stats["by_type"] == {"fact": 2, "preference": 1}
        assert stats["categories"] == {"acme": 2, "initech": 1}
        cats = await store.relevant_categories("Tell me about Initech", [])
        assert cats == ["initech"]

    async def test_invalid_items_are_refused_and_nothing_is_stored(self, stores: Any) -> None:
        store = await stores()
        for bad in (fact("   "), fact("x", kind="opinion"), fact("x", confidence=1.5)):
            with pytest.raises(ValueError):
                await store.remember_many([bad])
        assert await store.count() == 0

    async def test_records_copy_into_another_store_with_vectors(self, stores: Any) -> None:
        src = await stores()
        old = (await src.remember_many([fact("Acme Corp has a budget of 50000 dollars",
                                             category="acme")]))[0].item
        await src.remember_many([fact("Acme Corp has a budget of 80000 dollars"),
                                 fact("Initech sells printers to banks"),
                                 fact("Initech sells printers to banks")])
        records = [r async for r in src.records()]
        assert len(records) == 3
        assert {r.status for r in records} == {"active", "superseded"}
        active = [r for r in records if r.status == "active"]
        assert all(r.vector is not None and len(r.vector) == 384 for r in active)
        dst = await stores("copy")
        assert await dst.load(records) == 3
        assert await dst.load(records) == 0  # copying again adds nothing
        assert await dst.status(old.id) == await src.status(old.id)
        assert await dst.history(old.id) == await src.history(old.id)
        for r in records:
            assert await dst.get(r.item.id) == r.item
        copied = {r.item.id: r for r in [r async for r in dst.records()]}
        for r in active:
            assert copied[r.item.id].vector == pytest.approx(r.vector, abs=2e-3)
        hits = await dst.search("Initech printers banks")
        assert hits and hits[0].item.content == "Initech sells printers to banks"
        assert hits[0].item.times_seen == 2

    async def test_other_embedder_is_refused_until_reindexed(self, stores: Any) -> None:
        store = await stores("e")
        await store.remember_many([fact("Acme Corp is based in Berlin")])
        await store.close()
        with pytest.raises(EmbedderMismatch) as err:
            await stores("e", embedder=SmallEmbedder())
        assert err.value.code == "MEMORY_004" and "reindex" in err.value.message
        store = await stores("e", embedder=SmallEmbedder(), check_embedder=False)
        assert await store.reindex(SmallEmbedder()) == 1
        await store.close()
        store = await stores("e", embedder=SmallEmbedder())
        hits = await store.search("Acme Corp Berlin")
        assert hits and hits[0].similarity is not None
        assert (await store.stats())["dimensions"] == 64

    async def test_a_failing_embedder_is_memory_004(self, stores: Any) -> None:
        class Broken(SmallEmbedder):
            name = "hashing"
            dimensions = 384

            def embed(self, texts: list[str]) -> list[list[float]]:
                raise RuntimeError("model file missing")

        store = await stores("b")
        await store.close()
        store = await stores("b", embedder=Broken())
        with pytest.raises(MemoryBackendError) as err:
            await store.remember_many([fact("Acme Corp is based in Berlin")])
        assert err.value.code == "MEMORY_004" and "model file missing" in err.value.message

    async def test_provenance_is_stored_and_a_real_model_upgrades_an_offline_fact(
            self, stores: Any) -> None:
        store = await stores()
        first = (await store.remember_many([MemoryItem(
            content="Acme Corp is based in Berlin", provider="offline", model="offline-rules")]))[0]
        assert (first.item.provider, first.item.model) == ("offline", "offline-rules")
        got = await store.get(first.item.id)
        assert (got.provider, got.model) == ("offline", "offline-rules")
        again = (await store.remember_many([MemoryItem(
            content="Acme Corp is based in Berlin", provider="anthropic",
            model="claude-x")]))[0]
        assert again.action == "merged"
        got = await store.get(first.item.id)
        assert (got.provider, got.model) == ("anthropic", "claude-x")
        # A real model's fact is not demoted by the offline model seeing it again.
        await store.remember_many([MemoryItem(content="Acme Corp is based in Berlin",
                                              provider="offline")])
        assert (await store.get(first.item.id)).provider == "anthropic"

    async def test_same_subject_and_attribute_supersedes(self, stores: Any) -> None:
        store = await stores()
        old = (await store.remember_many([MemoryItem(
            content="John Smith is a qualified lead", subject="John Smith",
            attribute="lead status")]))[0].item
        new = (await store.remember_many([MemoryItem(
            content="The deal with John Smith was lost to a competitor",
            subject="john  smith", attribute="Lead Status")]))[0]
        assert new.action == "superseded" and new.previous.id == old.id
        assert await store.status(old.id) == ("superseded", new.item.id)
        same = (await store.remember_many([MemoryItem(
            content="the deal with John Smith was lost to a competitor.",
            subject="John Smith", attribute="lead status")]))[0]
        assert same.action == "merged" and same.item.id == new.item.id
        records = {r.item.id: r async for r in store.records()}
        assert records[new.item.id].item.subject == "john smith"
        assert records[new.item.id].item.attribute == "lead status"
