"""The ``memory:`` section of the config file, and opening the store it describes.

```yaml
memory:
  path: memory.db          # relative to the config directory; SIGIL_MEMORY_DB overrides
  embedder: hashing        # default: the registered embedder with the highest priority
  k: 20                    # hybrid results per retrieval
  filter_to: 10            # LLM filtering keeps this many when more come back
  min_similarity: 0.08     # vector hits below this cosine are dropped (embedder default)
  enabled: true            # false: no retrieval and no extraction
```
"""

from __future__ import annotations

from typing import Any

import attrs
from sigil_core.errors import ConfigError


@attrs.define
class MemorySettings:
    path: str | None = None
    embedder: str | None = None
    k: int = 20
    filter_to: int = 10
    min_similarity: float | None = None
    enabled: bool = True
    extract: bool = True

    @classmethod
    def from_config(cls, config: Any) -> MemorySettings:
        section = dict(config.section("memory")) if config is not None else {}
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"memory.{unknown[0]}: unknown key; known keys: "
                              f"{', '.join(sorted(known))}")
        settings = cls(**section)
        for name in ("k", "filter_to"):
            value = getattr(settings, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"memory.{name}: must be a whole number >= 1, got {value!r}")
        if settings.min_similarity is not None and not isinstance(settings.min_similarity,
                                                                  (int, float)):
            raise ConfigError("memory.min_similarity: must be a number")
        return settings


def open_store(config: Any, embedders: dict[str, Any], *, check_embedder: bool = True,
               path: Any = None, embedder: str | None = None) -> Any:
    """The store at the configured path (or ``path``), with the configured embedder."""
    from .embedders import choose
    from .store import MemoryStore, default_path

    settings = MemorySettings.from_config(config)
    chosen = choose(embedders, embedder or settings.embedder)
    return MemoryStore(path or default_path(config), chosen, check_embedder=check_embedder)
