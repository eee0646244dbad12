"""Sigil plugin: tools over the Model Context Protocol, builtin offline tools, and ReAct.

* MCP servers from the ``mcp_servers:`` config section, registered as tools named
  ``<server>.<tool>``, connected lazily and closed at the end of the run.
* ``calculator`` and ``current_time``: plain Python tools that work offline.
* The ``react`` reasoning strategy.
* ``sigil tools list`` and ``sigil tools call SERVER TOOL --args JSON``.
"""

__version__ = "0.1.0"
