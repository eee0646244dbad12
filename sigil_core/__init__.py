"""Sigil: an agent-orchestration framework whose every phase is a plugin.

Plugin authors need two names from here: :data:`hookimpl` to mark hook implementations, and
the hook specifications in :mod:`sigil_core.hookspecs`.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("sigil")

__all__ = ["__version__", "hookimpl"]
