"""Fixtures for the OpenAI provider tests (names prefixed: all plugin tests share a session)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sigil_provider_openai import provider as provider_module
from sigil_provider_openai.provider import OpenAIProvider
from sigil_provider_openai.settings import OpenAISettings
from sigil_provider_openai.testing.server import ChatServer, ServerOptions

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


class ServerProcess:
    """The test server as a subprocess (``python -m ...testing.server``)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sigil_provider_openai.testing.server", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = (self.proc.stdout.readline() if self.proc.stdout else "").strip()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"test server did not start: {line}")
        self.base_url = line.split("listening on ", 1)[1]

    def calls(self) -> list[dict]:
        import httpx

        return httpx.get(self.base_url.removesuffix("/v1") + "/_test/calls", timeout=5).json()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


@pytest.fixture
def openai_server_process() -> Iterator:
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = ServerProcess(*args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def openai_cli_env(tmp_path: Path):
    """Environment for a ``sigil`` subprocess that talks to a test server."""

    def make(base_url: str | None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPENAI_", "ANTHROPIC_", "SIGIL_"))}
        env.update(SIGIL_HOME=str(tmp_path / "home"), OPENAI_API_KEY=KEY, **extra)
        if base_url:
            env["OPENAI_BASE_URL"] = base_url
        return env

    return make
