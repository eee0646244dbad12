"""``sigil monitor``: the live terminal view, the server (serve, status, stop), and the
file-following mode.

Imported only when the ``sigil`` CLI is built; websockets and rich load inside the commands.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from sigil_core import LEVELS as LEVEL_NAMES


def _load_config() -> Any:
    try:
        from sigil_core import load_config
    except ImportError:  # pragma: no cover - the core is a dependency
        return None
    try:
        return load_config()
    except Exception as exc:  # noqa: BLE001 - ConfigError: one line, exit 2
        raise click.UsageError(str(exc)) from None


def _settings(host: str | None, port: int | None, token: str | None) -> dict[str, Any]:
    from .server import MonitorConfigError
    from .transport import settings_from_config

    try:
        s = settings_from_config(_load_config())
    except MonitorConfigError as exc:
        click.echo(f"Error: {exc} [SYSTEM_002]", err=True)
        sys.exit(2)
    if host:
        s["host"] = host
    if port is not None:
        s["port"] = port
    if token:
        s["token"] = token
    return s


@click.group(invoke_without_command=True)
@click.option("--session", "-s", help="Session ID to monitor.")
@click.option("--filter", "-f", "component", help="Filter by component (e.g. reasoning).")
@click.option("--level", "-l", default="info", show_default=True,
              type=click.Choice(LEVEL_NAMES, case_sensitive=False), help="Minimum log level.")
@click.option("--host", help="Monitor host (default cli.monitor.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535),
              help="Monitor port (default SIGIL_MONITOR_PORT / cli.monitor.port, 8000).")
@click.option("--token", help="Token of a non-loopback monitor (or SIGIL_MONITOR_TOKEN).")
@click.option("--files", "files", is_flag=True,
              help="No server: follow outputs/sessions/*.jsonl as plain lines.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Sessions directory for --files (default <outputs>/sessions).")
@click.option("--no-follow", is_flag=True, help="With --files: print what is there and exit.")
@click.pass_context
def monitor(ctx: click.Context, session: str | None, component: str | None, level: str,
            host: str | None, port: int | None, token: str | None, files: bool,
            directory: Path | None, no_follow: bool) -> None:
    """Watch runs live in the terminal: status, tokens and the latest events.

    \b
      sigil monitor                      all sessions, info and above
      sigil monitor -s sess_abc -l debug one session, everything
      sigil monitor -f reasoning         one component
      sigil monitor --files              no server: follow the session files
      sigil monitor serve                run the server (orchestrate --monitor starts one too)
      sigil monitor status               is a server running on the port?
      sigil monitor stop                 stop the server orchestrate --monitor started
    """
    if ctx.invoked_subcommand is not None:
        return
    level = level.lower()
    if files:
        _run_files(directory, session, component, level, follow=not no_follow)
        return
    s = _settings(host, port, token)
    _run_client(s, session, component, level)


def _run_files(directory: Path | None, session: str | None, component: str | None,
               level: str, follow: bool) -> None:
    from .follow import follow_files

    if directory is None:
        cfg = _load_config()
        directory = (Path(cfg.outputs_dir) if cfg is not None else Path("outputs")) / "sessions"
    if not directory.is_dir():
        raise click.UsageError(f"no sessions directory {directory}: run `sigil orchestrate` "
                               "first or pass --dir")
    if session and not (directory / f"{session}.jsonl").exists() and not follow:
        raise click.UsageError(f"no session {session} in {directory}")
    if follow:
        click.echo(f"Following {directory}/{session or '*'}.jsonl (Ctrl-C to stop)", err=True)
    try:
        for _ in follow_files(directory, session_id=session, component=component,
                              min_level=level, follow=follow,
                              echo=lambda line: click.echo(line)):
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


def _run_client(s: dict[str, Any], session: str | None, component: str | None,
                level: str) -> None:
    import asyncio

    from .monitor import console
    from .view import SigilView

    class SigilMonitorClient(SigilView):
        """monitor.py's client, pointed at the configured host/port, with the token if any."""

        async def connect(self) -> None:
            import json

            import websockets

            params = [f"session_id={self.session_id}"] if self.session_id else []
            if self.component_filter:
                params.append(f"components={self.component_filter}")
            url = self.ws_url + ("?" + "&".join(params) if params else "")
            headers = {"Authorization": f"Bearer {s['token']}"} if s["token"] else None
            async with websockets.connect(url, additional_headers=headers) as ws:
                await ws.send(json.dumps({
                    "type": "config", "filter": {"levels": self._get_level_filter()},
                    "buffer_size": 10, "flush_interval_ms": 100, "heartbeat_interval_ms": 1000,
                }))
                await self._receive_loop(ws)

    host = "127.0.0.1" if s["host"] in ("0.0.0.0", "::", "") else s["host"]
    client = SigilMonitorClient(session_id=session, component_filter=component,
                                level_filter=level)
    client.ws_url = f"ws://{host}:{s['port']}/monitoring/v1/logs/stream"
    console.print("[bold blue]Sigil Monitor[/bold blue]")
    console.print(f"Connecting to {client.ws_url} ...")
    try:
        asyncio.run(client.connect())
    except KeyboardInterrupt:
        console.print("\n[yellow]Monitor stopped[/yellow]")
    except OSError as exc:
        click.echo(f"Error: cannot connect to {client.ws_url} ({exc.strerror or exc}). Start a "
                   "server with `sigil monitor serve`, run `sigil orchestrate --monitor`, or "
                   "use `sigil monitor --files`.", err=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - e.g. a refused handshake: one line, no traceback
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


@monitor.command()
@click.option("--host", help="Address to bind (default 127.0.0.1; others need a token).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default 8000).")
@click.option("--token", help="Require this token (Bearer header or ?token=).")
@click.option("--follow", "follow_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Sessions directory to follow (default <outputs>/sessions).")
@click.option("--no-follow", is_flag=True, help="Do not follow session files.")
@click.option("--exit-when-idle", type=float, metavar="SECONDS",
              help="Exit after this long with no client, publisher or live session.")
@click.option("--pid-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the server's pid here while it runs.")
def serve(host: str | None, port: int | None, token: str | None, follow_dir: Path | None,
          no_follow: bool, exit_when_idle: float | None, pid_file: Path | None) -> None:
    """Run the monitor server: WebSocket stream, REST reads and the dashboard on one port."""
    import asyncio

    from .server import (
        MonitorConfigError,
        MonitorServer,
        PortInUseError,
        ServerSettings,
    )

    cfg = _load_config()
    s = _settings(host, port, token)
    if follow_dir is None and not no_follow:
        follow_dir = (Path(cfg.outputs_dir) if cfg is not None else Path("outputs")) / "sessions"
    settings = ServerSettings(
        host=s["host"], port=s["port"], token=s["token"], allowed_origins=s["allowed_origins"],
        max_streams=s["max_streams"], idle_timeout=s["idle_timeout"],
        default_budget=cfg.budget.total if cfg is not None else 256_000,
        exit_when_idle=exit_when_idle, follow_dir=None if no_follow else follow_dir,
        heartbeat_interval=(cfg.logging.stream.heartbeat_interval_ms / 1000 if cfg is not None
                            else 5.0),
    )

    async def main() -> None:
        server = MonitorServer(settings)
        await server.start()
        if pid_file is not None:
            from sigil_core import ensure_private_file

            ensure_private_file(pid_file).write_text(str(os.getpid()))
        click.echo(f"Sigil monitor on {server.url}", err=True)
        click.echo(f"Dashboard: {server.http_url}", err=True)
        try:
            await server.serve_until_stopped()
        finally:
            if pid_file is not None and pid_file.exists() and \
                    pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()

    try:
        asyncio.run(main())
    except MonitorConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except PortInUseError as exc:
        click.echo(f"Error: {exc}; another monitor may already be running (try "
                   f"`sigil monitor`), or choose another port with --port", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


def _home_and_port(port: int | None) -> tuple[Path, int]:
    cfg = _load_config()
    home = Path(getattr(cfg, "home", None) or os.environ.get("SIGIL_HOME")
                or Path.home() / ".sigil")
    return home, _settings(None, port, None)["port"]


@monitor.command()
@click.option("--port", type=click.IntRange(1, 65535),
              help="Monitor port (default SIGIL_MONITOR_PORT / cli.monitor.port, 8000).")
def status(port: int | None) -> None:
    """Say whether a monitor server runs on the port (exit 0) or not (exit 1)."""
    import asyncio

    from .control import pid_file, read_state
    from .transport import probe

    home, port = _home_and_port(port)
    state = read_state(home, port)
    s = _settings(None, port, None)
    host = "127.0.0.1" if s["host"] in ("0.0.0.0", "::", "") else s["host"]
    answer = asyncio.run(probe(host, port, s["token"]))
    if state.stale_removed:
        click.echo(f"Removed a stale pid file {pid_file(home, port)} (pid {state.pid} is gone).")
    if answer == "sigil":
        who = f"pid {state.pid}" if state.running else "not started by --monitor: no pid file"
        click.echo(f"A Sigil monitor runs on ws://{host}:{port} ({who}); dashboard "
                   f"http://{host}:{port}/. Stop it with `sigil monitor stop`"
                   + (" or by stopping the process that runs it." if not state.running else "."))
        return
    if answer == "other":
        click.echo(f"No Sigil monitor on port {port}: another program listens there.")
    else:
        click.echo(f"No monitor server runs on port {port}.")
    sys.exit(1)


@monitor.command()
@click.option("--port", type=click.IntRange(1, 65535),
              help="Monitor port (default SIGIL_MONITOR_PORT / cli.monitor.port, 8000).")
def stop(port: int | None) -> None:
    """Stop the monitor server that `sigil orchestrate --monitor` started on the port."""
    from .control import pid_file
    from .control import stop as stop_server

    home, port = _home_and_port(port)
    state = stop_server(home, port)
    if state.running:
        click.echo(f"Stopped the monitor server on port {port} (pid {state.pid}).")
        return
    if state.stale_removed:
        click.echo(f"No monitor server was running on port {port}; removed the stale pid file "
                   f"{pid_file(home, port)}.")
        return
    click.echo(f"No monitor server started by Sigil runs on port {port} (no pid file in "
               f"{home}); a server started with `sigil monitor serve` stops with Ctrl-C.")
