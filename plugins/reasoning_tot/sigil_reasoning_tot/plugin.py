"""The plugin module named by the entry point: it registers the strategy, nothing else.

This is all a strategy plugin needs. It is imported when Sigil starts, so it stays light:
the strategy module imports the core's heavier parts only when a step runs.
"""

from sigil_core import hookimpl

from .strategy import TreeOfThoughtsStrategy


@hookimpl
def sigil_register_strategies(register):
    """Register ``tree_of_thoughts``; the core picks it for complex steps."""
    register(TreeOfThoughtsStrategy())
