"""Anthropic (Claude) model provider for Sigil.

Importing this package is cheap: the ``anthropic`` SDK is imported only when a call is made, so
``sigil --help`` stays fast with the plugin installed.
"""

__version__ = "0.1.0"
