"""``sigil anthropic check``: one tiny call to verify the key, base URL and model settings."""

from __future__ import annotations

import click


@click.group("anthropic")
def anthropic_group() -> None:
    """The Anthropic provider."""


@anthropic_group.command("check")
@click.option("--component", default="router", show_default=True,
              help="Component whose model to use.")
def check(component: str) -> None:
    """Send one short message and print the model, usage and cache figures."""
    import asyncio

    from sigil_core import LLMRequest, SigilError, load_config

    from .provider import AnthropicProvider

    try:
        config = load_config()
        provider = AnthropicProvider().bind(config)
        if not provider.settings.api_key:
            raise click.UsageError("no API key: set ANTHROPIC_API_KEY or anthropic.api_key")
        request = LLMRequest(messages=[{"role": "user", "content": "Reply with: ok"}],
                             max_tokens=16, component=component, purpose="check",
                             model=config.llm.models.get(component) or config.llm.model)

        async def go():
            try:
                return await provider.complete(request)
            finally:
                await provider.aclose()

        response = asyncio.run(go())
    except SigilError as exc:
        raise click.ClickException(str(exc)) from None
    u = response.usage
    click.echo(f"{response.model}: {response.text!r}")
    click.echo(f"tokens: {u.input_tokens} in / {u.output_tokens} out, "
               f"{u.cache_read_tokens} cache read, {u.cache_write_tokens} cache write")
