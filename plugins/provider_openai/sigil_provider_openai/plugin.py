"""Entry point ``openai`` in the ``sigil`` group: registers the provider and its command."""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl
def sigil_register_providers(register: Any) -> None:
    """Register :class:`~sigil_provider_openai.provider.OpenAIProvider` as ``openai``."""
    from .provider import OpenAIProvider  # light: the SDK is imported only by calls

    register(OpenAIProvider())


@hookimpl
def sigil_register_commands(cli: Any) -> None:
    """Add ``sigil openai check``."""
    from .cli import openai_group

    cli.add_command(openai_group)
