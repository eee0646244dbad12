"""The plugin module named by the entry point: it registers the strategy, nothing else.

This is all a strategy plugin needs. Sigil imports it at every start (even for ``--help``), so
it imports nothing heavy: the strategy is built only when a run asks for the registry.
"""

from sigil_core import hookimpl


@hookimpl
def sigil_register_strategies(register):
    """Register ``tree_of_thoughts``; the core picks it for complex steps."""
    from .strategy import TreeOfThoughtsStrategy

    register(TreeOfThoughtsStrategy())


@hookimpl
def sigil_config_sections() -> list[str]:
    """The config sections this plugin reads."""
    return ["tree_of_thoughts"]
