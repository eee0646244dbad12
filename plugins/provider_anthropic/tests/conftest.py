"""Fixtures for the Anthropic provider tests (names prefixed: all plugin tests share a session)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sigil_provider_anthropic.provider import AnthropicProvider
from sigil_provider_anthropic.settings import AnthropicSettings
from sigil_provider_anthropic.testing.server import MessagesServer, ServerOptions

from sigil_core.testing import SigilCLI
from sigil_core.testing.server import ServerProcess


@pytest.fixture
def anthropic_server() -> Iterator[MessagesServer]:
    """An in-process Messages API on 127.0.0.1 that caches any prefix (min_cache_tokens=0)."""
    with MessagesServer(ServerOptions(min_cache_tokens=0, retry_after_s=0.01)) as server:
        yield server


@pytest.fixture
def anthropic_provider(anthropic_server: MessagesServer) -> AnthropicProvider:
    """A provider bound to the test server, with a short wait bound."""
    return AnthropicProvider(AnthropicSettings(api_key="sk-ant-test-SECRET", model="claude-test-1",
                                               base_url=anthropic_server.url, max_retries=3,
                                               max_total_wait_s=5.0, timeout=5.0))


@pytest.fixture
def anthropic_server_process() -> Iterator:
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = ServerProcess("sigil_provider_anthropic.testing.server", *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def anthropic_cli(tmp_path: Path):
    """The real ``sigil`` (a :class:`SigilCLI`, only this plugin besides the builtins) talking
    to the test server at URL."""

    def make(url: str, **extra: str) -> SigilCLI:
        return SigilCLI(tmp_path / "sigil", only=("anthropic",),
                        env={"ANTHROPIC_API_KEY": "sk-ant-test-SECRET",
                             "ANTHROPIC_BASE_URL": url, **extra})

    return make
