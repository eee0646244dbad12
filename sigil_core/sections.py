"""Reading a plugin's config section key by key into its settings object, with one-line errors.

For a section that maps onto an attrs class, :func:`sigil_core.read_section` is simpler; this
reader is for sections it cannot express (named sub-sections such as endpoint profiles merged
over the section, environment variables taking precedence over some keys).

Every error is a :class:`~sigil_core.errors.ConfigError` naming the file and the dotted key
(``config.yaml: openai.timeout: must be a number of seconds >= 0.001``), as the core's own
sections do. A plugin's settings class calls the readers for the keys it has::

    r = SectionReader(section, where="~/.sigil/config.yaml", prefix="openai")
    r.known(KNOWN_KEYS)
    r.strings(settings, "api_key", "model", "base_url")
    r.seconds(settings, "timeout", 0.001)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import ConfigError

__all__ = ["SectionReader"]


class SectionReader:
    """Copies validated values of ``section`` onto a settings object (absent keys are left)."""

    def __init__(self, section: dict[str, Any], where: str, prefix: str) -> None:
        self.section = section
        self.where = where
        self.prefix = prefix

    def bad(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where}: {self.prefix}.{key}: {problem}")

    def known(self, keys: Iterable[str]) -> None:
        keys = tuple(keys)
        unknown = sorted(set(self.section) - set(keys))
        if unknown:
            raise self.bad(unknown[0], f"unknown setting; known settings: {', '.join(keys)}")

    def strings(self, target: Any, *keys: str) -> None:
        """Non-empty strings, stripped."""
        for key in keys:
            value = self.section.get(key)
            if value is not None:
                if not isinstance(value, str) or not value.strip():
                    raise self.bad(key, "must be a non-empty string")
                setattr(target, key, value.strip())

    def models(self, target: Any, key: str = "models", example: str = "router: MODEL") -> None:
        """A map of component name to model id, merged over the target's."""
        value = self.section.get(key)
        if value is not None:
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()):
                raise self.bad(key, f"must map component names to model ids, e.g. {example}")
            setattr(target, key, {**getattr(target, key), **value})

    def seconds(self, target: Any, key: str, minimum: float) -> None:
        value = self.section.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
                raise self.bad(key, f"must be a number of seconds >= {minimum:g}")
            setattr(target, key, float(value))

    def whole(self, target: Any, key: str, minimum: int) -> None:
        value = self.section.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise self.bad(key, f"must be a whole number >= {minimum}")
            setattr(target, key, value)

    def flag(self, target: Any, key: str) -> None:
        value = self.section.get(key)
        if value is not None:
            if not isinstance(value, bool):
                raise self.bad(key, "must be true or false")
            setattr(target, key, value)

    def choice(self, target: Any, key: str, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        value = self.section.get(key)
        if value is not None:
            if value not in allowed:
                raise self.bad(key, f"must be one of {', '.join(allowed)}")
            setattr(target, key, value)
