"""The ``memory:`` section of the config file (shared by every backend, see
:mod:`sigil_core.memory`), and opening the SQLite store it describes.

```yaml
memory:
  backend: sqlite          # this plugin answers when the backend is sqlite (the default)
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

from sigil_core.memory import MemorySettings

__all__ = ["MemorySettings", "open_store"]


def open_store(config: Any, embedders: dict[str, Any], *, check_embedder: bool = True,
               path: Any = None, embedder: str | None = None) -> Any:
    """The store at the configured path (or ``path``), with the configured embedder."""
    from .embedders import choose
    from .store import MemoryStore, default_path

    settings = MemorySettings.from_config(config)
    chosen = choose(embedders, embedder or settings.embedder)
    return MemoryStore(path or default_path(config), chosen, check_embedder=check_embedder)
