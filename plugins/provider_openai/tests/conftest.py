"""Fixtures for the OpenAI provider tests (names prefixed: all plugin tests share a session)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sigil_provider_openai import provider as provider_module
from sigil_provider_openai.provider import OpenAIProvider
from sigil_provider_openai.settings import OpenAISettings
from sigil_provider_openai.testing.server import ChatServer, ServerOptions

from sigil_core.testing import SigilCLI
from sigil_core.testing.server import ServerProcess

KEY = "sk-openai-test-SECRET"


@pytest.fixture(autouse=True)
def openai_forget_endpoints() -> Iterator[None]:
    """Each test detects endpoints afresh (the in-memory cache is per process)."""
    provider_module._LEARNT.clear()
    yield
    provider_module._LEARNT.clear()


@pytest.fixture
def openai_server_factory() -> Iterator:
    """Start in-process Chat Completions servers with the given options."""
    started: list[ChatServer] = []

    def start(**options) -> ChatServer:
        options.setdefault("min_cache_tokens", 0)
        options.setdefault("retry_after_s", 0.01)
        server = ChatServer(ServerOptions(**options)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def openai_server(openai_server_factory) -> ChatServer:
    return openai_server_factory()


@pytest.fixture
def openai_provider_for(tmp_path: Path):
    """A provider bound to a test server, with a short wait bound and its own cache folder."""

    def make(server: ChatServer, **settings) -> OpenAIProvider:
        values = {"api_key": KEY, "model": "gpt-test-1", "base_url": server.base_url,
                  "max_retries": 3, "max_total_wait_s": 5.0, "timeout": 5.0, **settings}
        return OpenAIProvider(OpenAISettings(**values), home=tmp_path / "home")

    return make


@pytest.fixture
def openai_server_process() -> Iterator:
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = ServerProcess("sigil_provider_openai.testing.server", *args)
        server.base_url = server.url  # the server announces its /v1 base URL
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def openai_cli(tmp_path: Path):
    """The real ``sigil`` (a :class:`SigilCLI` in ``root``, only this plugin besides the
    builtins) with ``OPENAI_API_KEY`` set and ``OPENAI_BASE_URL`` pointing at a test server
    (unless None)."""

    def make(base_url: str | None, root: Path | None = None, **extra: str) -> SigilCLI:
        env = {"OPENAI_API_KEY": KEY, **extra}
        if base_url:
            env["OPENAI_BASE_URL"] = base_url
        return SigilCLI(root or tmp_path / "sigil", only=("openai",), env=env)

    return make
