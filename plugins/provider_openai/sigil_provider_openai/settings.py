"""The ``openai:`` section of config.yaml, its endpoint profiles, and the environment on top.

::

    openai:
      model: gpt-4o-mini            # the default endpoint (OpenAI itself, or OPENAI_BASE_URL)
      profiles:
        ollama: {base_url: http://localhost:11434/v1, model: llama3.1}
        vllm:   {base_url: http://localhost:8000/v1, model: Qwen/Qwen2.5-7B-Instruct}

Precedence follows Sigil's rule (flag > environment > config file > defaults). For the default
endpoint ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` win over ``api_key`` and ``base_url`` in the
file. A profile is the section's settings with the profile's on top; its own ``base_url`` is not
overridden by ``OPENAI_BASE_URL``, and it is never sent ``OPENAI_API_KEY`` unless it says so
(``api_key_env: OPENAI_API_KEY``): a key for OpenAI does not leak to a local server. Unknown keys
and bad values are :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from sigil_core import ConfigError
from sigil_core.sections import SectionReader

DEFAULT_MODEL = "gpt-4o-mini"
OPENAI_URL = "https://api.openai.com/v1"

STRUCTURED = ("auto", "json_schema", "tools", "json_mode")
TOKENS_PARAMS = ("auto", "max_tokens", "max_completion_tokens")

ENDPOINT_KEYS = ("api_key", "api_key_env", "model", "models", "base_url", "timeout",
                 "max_retries", "max_total_wait_s", "stream_min_tokens", "structured",
                 "max_tokens_param", "organization")
KNOWN_KEYS = (*ENDPOINT_KEYS, "profiles")


@attrs.define
class OpenAISettings:
    """One endpoint's resolved settings. ``api_key`` is kept out of ``repr`` so it cannot leak."""

    api_key: str | None = attrs.field(default=None, repr=False)
    #: Default model id; ``models`` maps a component (router, planner, ...) to its own model.
    model: str = DEFAULT_MODEL
    models: dict[str, str] = attrs.Factory(dict)
    #: None: OpenAI itself.
    base_url: str | None = None
    organization: str | None = None
    #: Seconds one HTTP attempt may take.
    timeout: float = 600.0
    #: Retries the SDK makes on 408/409/429/5xx and connection errors.
    max_retries: int = 4
    #: Upper bound on the seconds spent waiting between retries of one call.
    max_total_wait_s: float = 60.0
    #: Calls asking for at least this many output tokens are streamed.
    stream_min_tokens: int = 4096
    #: How structured output is asked for; ``auto`` detects it per endpoint (and caches it).
    structured: str = "auto"
    #: Which output-limit parameter to send; ``auto``: ``max_completion_tokens`` to OpenAI,
    #: ``max_tokens`` elsewhere, switching when a server asks for the other.
    max_tokens_param: str = "auto"
    #: The profile these settings come from (None: the default endpoint).
    profile: str | None = None

    @property
    def url(self) -> str:
        return (self.base_url or OPENAI_URL).rstrip("/")

    @property
    def is_openai(self) -> bool:
        return self.url.startswith(OPENAI_URL)

    @classmethod
    def from_config(cls, config: Any, profile: str | None = None) -> OpenAISettings:
        where = str(config.path) if getattr(config, "path", None) else "config"
        return cls.from_section(config.section("openai"), where, profile)

    @classmethod
    def from_section(cls, section: dict[str, Any], where: str = "config",
                     profile: str | None = None) -> OpenAISettings:
        SectionReader(section, where, "openai").known(KNOWN_KEYS)
        s = cls()
        _apply(s, section, where, "openai")
        profiles = profiles_of(section, where)
        if profile is None:
            if os.environ.get("OPENAI_API_KEY"):
                s.api_key = os.environ["OPENAI_API_KEY"]
            if os.environ.get("OPENAI_BASE_URL"):
                s.base_url = os.environ["OPENAI_BASE_URL"]
            return s
        if profile not in profiles:
            raise ConfigError(f"{where}: openai.profiles: no profile {profile!r}; configured: "
                              f"{', '.join(profiles) or 'none'}")
        own = profiles[profile]
        s.profile = profile
        if "base_url" in own or "api_key" in own or "api_key_env" in own:
            s.api_key = None  # the default endpoint's key stays with it
        _apply(s, own, where, f"openai.profiles.{profile}")
        return s

    def model_for(self, component: str, requested: str | None, global_model: str | None) -> str:
        """A model the caller asked for (or ``llm.models.<component>``) wins; then this
        endpoint's ``models.<component>``, then ``llm.model``, then its ``model``. A profile's
        own ``model`` wins over ``llm.model`` (a local server serves its own models)."""
        if requested and requested != global_model:
            return requested
        if component in self.models:
            return self.models[component]
        if self.profile is not None:
            return self.model
        return requested or self.model

    def tokens_param(self) -> str:
        if self.max_tokens_param != "auto":
            return self.max_tokens_param
        return "max_completion_tokens" if self.is_openai else "max_tokens"


def profiles_of(section: dict[str, Any], where: str = "config") -> dict[str, dict[str, Any]]:
    profiles = section.get("profiles") or {}
    if not isinstance(profiles, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) for k, v in profiles.items()):
        raise ConfigError(f"{where}: openai.profiles: must map profile names to endpoint "
                          "settings, e.g. ollama: {base_url: http://localhost:11434/v1}")
    for name, own in profiles.items():
        SectionReader(own, where, f"openai.profiles.{name}").known(ENDPOINT_KEYS)
    return profiles


def _apply(s: OpenAISettings, section: dict[str, Any], where: str, prefix: str) -> None:
    r = SectionReader(section, where, prefix)
    r.strings(s, "api_key", "model", "base_url", "organization")
    env = section.get("api_key_env")
    if env is not None:
        if not isinstance(env, str) or not env.strip():
            raise r.bad("api_key_env", "must name an environment variable")
        if os.environ.get(env.strip()):
            s.api_key = os.environ[env.strip()]
    r.models(s, example="router: gpt-4o-mini")
    r.seconds(s, "timeout", 0.001)
    r.seconds(s, "max_total_wait_s", 0.0)
    r.whole(s, "max_retries", 0)
    r.whole(s, "stream_min_tokens", 1)
    r.choice(s, "structured", STRUCTURED)
    r.choice(s, "max_tokens_param", TOKENS_PARAMS)
