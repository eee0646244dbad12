"""Entry point ``anthropic`` in the ``sigil`` group: registers the provider and its command."""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl
def sigil_register_providers(register: Any) -> None:
    """Register :class:`~sigil_provider_anthropic.provider.AnthropicProvider` as ``anthropic``."""
    from .provider import AnthropicProvider  # light: the SDK is imported only by calls

    register(AnthropicProvider())


@hookimpl
def sigil_register_commands(cli: Any) -> None:
    """Add ``sigil anthropic check``."""
    from .cli import anthropic_group

    cli.add_command(anthropic_group)
