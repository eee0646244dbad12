"""The ``anthropic:`` section of config.yaml, with the environment on top.

Precedence follows Sigil's rule (flag > environment > config file > defaults): the
``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` environment variables win over ``api_key`` and
``base_url`` in the file. Unknown keys and bad values are :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from sigil_core.errors import ConfigError

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
        def bad(key: str, problem: str) -> ConfigError:
            return ConfigError(f"{where}: anthropic.{key}: {problem}")

        unknown = sorted(set(section) - set(KNOWN_KEYS))
        if unknown:
            raise bad(unknown[0], f"unknown setting; known settings: {', '.join(KNOWN_KEYS)}")
        s = cls()
        for key in ("api_key", "model", "base_url"):
            value = section.get(key)
            if value is not None:
                if not isinstance(value, str) or not value.strip():
                    raise bad(key, "must be a non-empty string")
                setattr(s, key, value.strip())
        models = section.get("models")
        if models is not None:
            if not isinstance(models, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) and v for k, v in models.items()):
                raise bad("models", "must map component names to model ids, e.g. router: "
                                    "claude-haiku-4-5")
            s.models = dict(models)
        for key, minimum in (("timeout", 0.001), ("max_total_wait_s", 0.0)):
            value = section.get(key)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
                    raise bad(key, f"must be a number of seconds >= {minimum:g}")
                setattr(s, key, float(value))
        for key, minimum in (("max_retries", 0), ("stream_min_tokens", 1)):
            value = section.get(key)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                    raise bad(key, f"must be a whole number >= {minimum}")
                setattr(s, key, value)
        if section.get("cache") is not None:
            if not isinstance(section["cache"], bool):
                raise bad("cache", "must be true or false")
            s.cache = section["cache"]
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
