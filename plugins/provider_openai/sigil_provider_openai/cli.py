"""``sigil openai check``: one tiny call to verify an endpoint's URL, key and model."""

from __future__ import annotations

import click


@click.group("openai")
def openai_group() -> None:
    """The OpenAI provider (OpenAI and OpenAI-compatible servers)."""


@openai_group.command("check")
@click.option("--profile", default=None, help="Endpoint profile from openai.profiles "
              "(default: the OpenAI endpoint, or OPENAI_BASE_URL).")
@click.option("--component", default="router", show_default=True,
              help="Component whose model to use.")
def check(profile: str | None, component: str) -> None:
    """Send one short message; print the model, the latency and the usage reported."""
    import asyncio
    import time

    from sigil_core import ConfigError, LLMRequest, SigilError, load_config

    from .provider import OpenAIProvider

    try:
        config = load_config()
        provider = OpenAIProvider()
        if profile is not None and profile not in provider.profiles(config):
            known = ", ".join(provider.profiles(config)) or "none"
            raise click.UsageError(f"no profile {profile!r} in openai.profiles; configured: "
                                   f"{known}")
        provider = provider.bind(config, profile=profile)
        request = LLMRequest(messages=[{"role": "user", "content": "Reply with: ok"}],
                             max_tokens=16, component=component, purpose="check",
                             model=config.llm.models.get(component) or config.llm.model)

        async def go():
            try:
                start = time.perf_counter()
                response = await provider.complete(request)
                return response, time.perf_counter() - start
            finally:
                await provider.aclose()

        response, elapsed = asyncio.run(go())
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except SigilError as exc:
        raise click.ClickException(str(exc)) from None
    u = response.usage
    settings = provider.settings
    click.echo(f"{response.model} at {settings.url}: {response.text[:80]!r}")
    click.echo(f"latency: {elapsed * 1000:.0f} ms")
    if not u.total_tokens:
        click.echo("tokens: the server reported no usage (Sigil books an estimate for such "
                   "calls)")
    else:
        click.echo(f"tokens: {u.input_tokens + (u.cache_read_tokens or 0)} prompt "
                   f"({u.cache_read_tokens or 0} cached) / {u.output_tokens} completion")
