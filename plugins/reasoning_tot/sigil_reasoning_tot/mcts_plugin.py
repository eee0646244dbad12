"""The ``reasoning_mcts`` entry point: registers the ``mcts`` strategy, nothing else.

A second entry point of this distribution, so ``mcts`` can be disabled on its own
(``SIGIL_DISABLE_PLUGINS=reasoning_mcts``): critical steps then fall back to the next strategy
down the chain (react, tree_of_thoughts, ...), as before it was installed.
"""

from sigil_core import hookimpl


@hookimpl
def sigil_register_strategies(register):
    """Register ``mcts``; the core picks it for critical steps (the strongest strategy)."""
    from .mcts_strategy import MCTSStrategy

    register(MCTSStrategy())


@hookimpl
def sigil_config_sections() -> list[str]:
    """The config sections this plugin reads."""
    return ["mcts"]
