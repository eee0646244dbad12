"""Choosing a provider by name, by ``provider:profile`` and by a profile alone."""

from __future__ import annotations

import pytest

from sigil_core import hookimpl
from sigil_core.config import Config
from sigil_core.errors import UsageError
from sigil_core.orchestrator import choose_provider
from sigil_core.plugins import PluginHost


class Profiled:
    """A provider with endpoint profiles read from its config section."""

    name = "compat"
    priority = 5

    def __init__(self, profile: str | None = None) -> None:
        self.profile = profile

    def available(self, config: Config) -> bool:
        return False  # no key: only explicit choices reach it

    def profiles(self, config: Config) -> list[str]:
        return sorted(config.section("compat").get("profiles", {}))

    def bind(self, config: Config, profile: str | None = None) -> Profiled:
        return Profiled(profile)

    def estimate_input_tokens(self, request):  # pragma: no cover - not called
        return 1

    async def complete(self, request):  # pragma: no cover - not called
        raise NotImplementedError


class Plugin:
    @hookimpl
    def sigil_register_providers(self, register):
        register(Profiled())


def host() -> PluginHost:
    h = PluginHost(load_entry_points=False).load()
    h.register(Plugin(), name="compat")
    return h


def config(**profiles) -> Config:
    cfg = Config()
    cfg.sections["compat"] = {"profiles": profiles}
    return cfg


def test_provider_colon_profile_binds_that_profile():
    chosen = choose_provider(config(ollama={}, vllm={}), host(), "compat:ollama")
    assert isinstance(chosen, Profiled) and chosen.profile == "ollama"


def test_a_profile_alone_finds_its_provider():
    cfg = config(ollama={}, vllm={})
    cfg.llm.provider = "vllm"
    chosen = choose_provider(cfg, host())
    assert isinstance(chosen, Profiled) and chosen.profile == "vllm"


def test_unknown_profile_names_the_configured_ones():
    with pytest.raises(UsageError, match=r"no endpoint profile 'lmstudio'; configured: ollama, vllm"):
        choose_provider(config(ollama={}, vllm={}), host(), "compat:lmstudio")


def test_unknown_name_is_still_an_unknown_provider():
    with pytest.raises(UsageError, match="unknown LLM provider 'nothing'"):
        choose_provider(config(ollama={}), host(), "nothing")


def test_the_provider_itself_still_needs_to_be_available():
    with pytest.raises(UsageError, match="'compat' is not configured"):
        choose_provider(config(), host(), "compat")
