"""The ``anthropic:`` section of config.yaml, with the environment on top.

Precedence follows Sigil's rule (flag > environment > config file > defaults): the
``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` environment variables win over ``api_key`` and
``base_url`` in the file. Unknown keys and bad values are :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from sigil_core.sections import SectionReader

DEFAULT_MODEL = "claude-sonnet-4-6"

KNOWN_KEYS = ("api_key", "model", "models", "base_url", "timeout", "max_retries",
              "max_total_wait_s", "cache", "stream_min_tokens")


@attrs.define
class AnthropicSettings:
    """Resolved provider settings. ``api_key`` is kept out of ``repr`` so it cannot leak."""

    api_key: str | None = attrs.field(default=None, repr=False)
    #: Default model id; ``models`` maps a component (router, planner, ...) to its own model.
    model: str = DEFAULT_MODEL
    models: dict[str, str] = attrs.Factory(dict)
    base_url: str | None = None
    #: Seconds one HTTP attempt may take.
    timeout: float = 600.0
    #: Retries the SDK makes on 408/409/429/5xx/529 and connection errors.
    max_retries: int = 4
    #: Upper bound on the seconds spent waiting between retries of one call; a ``retry-after``
    #: that would go past it ends the call at once with a recoverable error.
    max_total_wait_s: float = 60.0
    #: Mark the system prompt and tool definitions for prompt caching.
    cache: bool = True
    #: Calls asking for at least this many output tokens are streamed (the SDK refuses long
    #: non-streaming calls, and a stream keeps the connection alive).
    stream_min_tokens: int = 8192

    @classmethod
    def from_section(cls, section: dict[str, Any], where: str = "config") -> AnthropicSettings:
        r = SectionReader(section, where, "anthropic")
        r.known(KNOWN_KEYS)
        s = cls()
        r.strings(s, "api_key", "model", "base_url")
        r.models(s, example="router: claude-haiku-4-5")
        r.seconds(s, "timeout", 0.001)
        r.seconds(s, "max_total_wait_s", 0.0)
        r.whole(s, "max_retries", 0)
        r.whole(s, "stream_min_tokens", 1)
        r.flag(s, "cache")
        # The environment wins over the file.
        if os.environ.get("ANTHROPIC_API_KEY"):
            s.api_key = os.environ["ANTHROPIC_API_KEY"]
        if os.environ.get("ANTHROPIC_BASE_URL"):
            s.base_url = os.environ["ANTHROPIC_BASE_URL"]
        return s

    @classmethod
    def from_config(cls, config: Any) -> AnthropicSettings:
        where = str(config.path) if getattr(config, "path", None) else "config"
        return cls.from_section(config.section("anthropic"), where)

    def model_for(self, component: str, requested: str | None, global_model: str | None) -> str:
        """Pick the model id for a call.

        A model the caller asked for (or ``llm.models.<component>``) wins; otherwise
        ``anthropic.models.<component>``, then ``llm.model``, then ``anthropic.model``.
        """
        if requested and requested != global_model:
            return requested
        if component in self.models:
            return self.models[component]
        return requested or self.model
