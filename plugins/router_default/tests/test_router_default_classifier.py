"""The fast-path classifier, strategy/handler selection and the router settings."""

from __future__ import annotations

import pytest
from sigil_router_default.classifier import Classifier
from sigil_router_default.router import RouterSettings
from sigil_router_default.selection import select_handler, select_strategy

from sigil_core import ConfigError, strategy_for_complexity

AGENTS = ["lead_qualifier", "researcher"]


@pytest.mark.parametrize("text,intent", [
    ("What is the capital of France?", "simple_query"),
    ("Create an agent that books meetings", "create_agent"),
    ("Update the researcher agent to cite sources", "modify_agent"),
    ("Add the web_search tool to lead_qualifier", "modify_agent"),
    ("Qualify this lead: John Smith from Acme Corp", "execute_task"),
    ("Use the researcher agent to find papers on RAG", "execute_task"),
])
def test_clear_requests_are_decided_confidently(text: str, intent: str) -> None:
    result = Classifier(AGENTS).classify(text)
    assert result.intent == intent
    assert result.confidence >= 0.8
    assert result.reason  # the log says why


@pytest.mark.parametrize("text", ["lead qualifier", "Help me with my taxes", "agents"])
def test_unclear_requests_stay_under_the_threshold(text: str) -> None:
    assert Classifier(AGENTS).classify(text).confidence < 0.8


def test_known_agent_names_decide_modify_versus_create() -> None:
    text = "Tweak weekly_digest so that it is shorter"
    without = Classifier(AGENTS).classify(text)
    with_known = Classifier(AGENTS + ["weekly_digest"]).classify(text)
    assert without.confidence < 0.8  # an unknown word: leave it to the LLM
    assert (with_known.intent, with_known.agent_name) == ("modify_agent", "weekly_digest")
    assert with_known.confidence >= 0.8


def test_agent_names_match_with_spaces_or_dashes() -> None:
    result = Classifier(AGENTS).classify("Tweak the lead qualifier so it asks about budget first")
    assert (result.intent, result.agent_name) == ("modify_agent", "lead_qualifier")


def test_complexity_grows_with_subtasks_stakes_and_actions() -> None:
    c = Classifier()
    light = c.classify("Write a haiku about autumn").complexity
    medium = c.classify("Research market trends for AI startups").complexity
    heavy = c.classify("Research the regulatory requirements for a medical device in the EU, "
                       "assess our compliance gaps and produce a remediation plan").complexity
    acting = c.classify("Find a hotel in Rome and book two nights").complexity
    assert light < 0.3 <= medium < 0.7 <= heavy
    assert acting >= 0.7  # acting on the world needs react


def test_attached_material_does_not_make_a_request_harder() -> None:
    c = Classifier()
    short = c.classify("Summarize this paragraph: cats sleep a lot and dream of mice all day."
                       ).complexity
    long = c.classify("Summarize this paragraph: " + "cats sleep a lot and dream. " * 40)
    assert long.complexity == pytest.approx(short, abs=0.05)


@pytest.mark.parametrize("complexity,strategy", [
    (0.0, "direct"), (0.29, "direct"), (0.3, "chain_of_thought"), (0.49, "chain_of_thought"),
    (0.5, "tree_of_thoughts"), (0.7, "react"), (0.89, "react"), (0.9, "mcts"), (1.0, "mcts"),
])
def test_design_complexity_ranges(complexity: float, strategy: str) -> None:
    assert strategy_for_complexity(complexity) == strategy
    assert select_strategy(complexity) == strategy


def test_missing_strategy_falls_down_the_chain() -> None:
    installed = {"direct", "chain_of_thought", "tree_of_thoughts"}
    assert select_strategy(0.95, installed) == "tree_of_thoughts"
    assert select_strategy(0.6, {"direct"}) == "direct"
    # Nothing from the chain installed: the nominal name is kept for the run to report.
    assert select_strategy(0.6, {"custom"}) == "tree_of_thoughts"


def test_agent_preferences_win_and_third_party_names_are_kept() -> None:
    installed = {"direct", "chain_of_thought", "tree_of_thoughts", "react", "mcts", "debate"}
    assert select_strategy(0.8, installed, ["chain_of_thought"]) == "chain_of_thought"
    assert select_strategy(0.1, installed, ["mcts"]) == "mcts"
    # A third party's strategy an agent prefers is not dropped for being outside the ranking.
    assert select_strategy(0.4, installed, ["not_installed", "debate"]) == "debate"
    assert select_strategy(0.4, installed - {"debate"}, ["debate"]) == "chain_of_thought"


def test_handlers_by_intent_and_complexity() -> None:
    assert select_handler("simple_query", 0.1) == "direct_answer"
    assert select_handler("simple_query", 0.6) == "executor"  # not so simple: full flow
    assert select_handler("create_agent", 0.4) == "agent_builder"
    assert select_handler("modify_agent", 0.2) == "agent_editor"
    assert select_handler("execute_task", 0.3) == "executor"
    assert select_handler("execute_task", 0.65) == "executor_rai"


def test_settings_defaults_and_validation() -> None:
    assert RouterSettings.from_section({}).threshold == 0.8
    assert RouterSettings.from_section({"threshold": 0.9, "fast_path": False}).fast_path is False
    for bad in ({"threshold": 2}, {"threshold": "high"}, {"fast_path": "yes"},
                {"thresold": 0.5}, {"max_tokens": 0}, {"fast_path_max_words": 1.5}):
        with pytest.raises(ConfigError, match=r"router\."):
            RouterSettings.from_section(bad)


from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300), st.lists(st.from_regex(r"[a-z][a-z0-9_-]{0,12}", fullmatch=True),
                                       max_size=4))
def test_any_text_gets_a_valid_classification(text: str, agents: list[str]) -> None:
    result = Classifier(agents).classify(text)
    assert result.intent in ("create_agent", "execute_task", "simple_query", "modify_agent")
    assert 0.0 <= result.confidence <= 1.0
    assert 0.0 <= result.complexity <= 1.0
    assert abs(sum(result.scores.values()) - 1.0) < 1e-3


def test_saved_agents_are_listed_again_when_their_folder_changes(tmp_path) -> None:
    """The names of saved agent files are kept between runs while the folder is unchanged;
    an agent saved, removed or renamed since is seen by the next run's routing, also within
    the same second (a folder changed that recently is always listed anew)."""
    import os
    import time

    from sigil_router_default.router import _saved_agent_names

    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "closer.yaml").write_text("name: closer\n")
    (folder / "not an agent.yaml").write_text("")  # not a valid agent name: left out
    old = time.time_ns() - 5_000_000_000
    os.utime(folder, ns=(old, old))
    assert _saved_agent_names(folder) == ("closer",)
    (folder / "closer.yaml").unlink()  # the folder's mtime moves on: listed again
    assert _saved_agent_names(folder) == ()
    for name in ("scout", "writer"):  # twice within the same second
        (folder / f"{name}.yaml").write_text(f"name: {name}\n")
        assert name in _saved_agent_names(folder)
    assert sorted(_saved_agent_names(folder)) == ["scout", "writer"]
    assert _saved_agent_names(tmp_path / "missing") == ()
    (tmp_path / "file").write_text("")
    assert _saved_agent_names(tmp_path / "file") == ()
