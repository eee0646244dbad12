"""Testing a plugin against the real host: a scripted provider, a run for unit-testing a hook,
and the real ``sigil`` CLI in a temporary home.

Re-exported by :mod:`sigil_core.testing`; the pytest fixtures are in
:mod:`sigil_core.testing.fixtures` (loaded automatically by pytest through the ``pytest11``
entry point of sigil-core).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import hookimpl
from ..constants import estimate_tokens
from ..llm import LLMRequest, LLMResponse
from ..model import ExecutionContext, TokenUsage, utcnow

#: An answer in a script: text, a dict (structured output), an exception to raise, or a
#: function of the request returning one of those.
Answer = str | dict[str, Any] | BaseException | Callable[[LLMRequest], Any]


#: The spec's lead example.
LEAD_TASK = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"


class ScriptedProvider:
    """A provider that answers from a script, for tests: no model, no network.

    A request whose purpose is a key of ``by_purpose`` gets that answer (every time); the
    others take ``answers`` in order; when they run out, ``default`` answers (a function of the
    request, or a fixed answer), else the call fails the test. Token usage is estimated from the
    request and the answer like the budget's own estimates (never 0), so budget accounting is
    exercised for real; ``input_tokens`` fixes the input side of every call instead (a large
    prompt, to test a budget). Every request is kept in ``requests``.
    """

    name = "scripted"
    #: Above every real provider: registered in a test, it is the one chosen.
    priority = 10_000
    notice = "Answers come from a test script (sigil_core.testing.ScriptedProvider), not a model."

    def __init__(self, answers: Iterable[Answer] = (), *, default: Answer | None = None,
                 by_purpose: dict[str, Answer] | None = None, model: str = "script",
                 input_tokens: int | None = None) -> None:
        self.answers = list(answers)
        self.by_purpose = dict(by_purpose or {})
        self.input_tokens = input_tokens
        self.default = default
        self.model = model
        self.requests: list[LLMRequest] = []

    def available(self, config: Any) -> bool:
        return True

    def estimate_input_tokens(self, request: LLMRequest) -> int:
        if self.input_tokens is not None:
            return self.input_tokens
        return estimate_tokens(request.text())

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        if request.purpose in self.by_purpose:
            answer: Any = self.by_purpose[request.purpose]
        elif self.answers:
            answer = self.answers.pop(0)
        elif self.default is not None:
            answer = self.default
        else:
            raise AssertionError(
                f"ScriptedProvider ran out of answers at call {len(self.requests)} "
                f"({request.purpose}, component {request.component})")
        if callable(answer) and not isinstance(answer, BaseException):
            answer = answer(request)
        if isinstance(answer, BaseException):
            raise answer
        data = answer if isinstance(answer, (dict, list)) else None
        text = json.dumps(answer) if data is not None else str(answer)
        usage = TokenUsage(self.estimate_input_tokens(request), max(1, estimate_tokens(text)),
                           model=f"{self.name}:{self.model}")
        return LLMResponse(text, usage, self.model, data=data, stop_reason="end_turn")

    # as a plugin: ``host.register(provider)`` makes it the run's provider
    @hookimpl
    def sigil_register_providers(self, register: Callable[[Any], None]) -> None:
        register(self)


def make_host(*plugins: Any, entry_points: bool = False) -> Any:
    """A plugin host with the builtins (and installed plugins when ``entry_points``) loaded and
    ``plugins`` registered in process, each under its class name (or ``name`` attribute)."""
    from ..plugins import PluginHost

    host = PluginHost(load_entry_points=entry_points).load()
    for plugin in plugins:
        name = getattr(plugin, "plugin_name", None) or type(plugin).__name__
        if isinstance(plugin, type(sys)):
            name = plugin.__name__
        host.register(plugin, name=name)
    return host


def make_run(*plugins: Any, provider: Any = None, config: Any = None, host: Any = None,
             task: str = "test task", budget: int = 100_000, session_id: str = "sess_test",
             agent: str | None = None) -> Any:
    """A :class:`~sigil_core.run.Run` for unit-testing a hook or a strategy, made as the
    orchestrator makes one: the config (``load_config()`` unless given: point ``SIGIL_HOME`` at a
    temporary folder first), a host with the builtins and ``plugins``, and ``provider`` (a
    :class:`ScriptedProvider` with the offline model as default when not given). The run is the
    current one for the calling task, so ``run.operation``, tools and events work; events stay
    in ``run.bus.events`` (no files are written).
    """
    from ..config import load_config
    from ..orchestrator import choose_provider
    from ..run import Run

    config = config if config is not None else load_config()
    host = host if host is not None else make_host(*plugins)
    host.configure(config)
    if provider is None:
        provider = choose_provider(config, host)
    ctx = ExecutionContext(session_id, session_id, task, budget, utcnow(), agent=agent)
    run = Run(ctx, config, host, provider)
    run.activate()
    return run


class SigilCLI:
    """Runs the real ``sigil`` command as a subprocess in ``root``: its own SIGIL_HOME
    (``root/home``) and working folder (``root/work``, where ``outputs/`` goes), without the
    caller's SIGIL_* or API-key variables. ``cli("orchestrate", TASK)`` returns the
    :class:`subprocess.CompletedProcess` (text)."""

    #: Variables of the caller's environment that never reach the command.
    DROPPED = ("SIGIL_", "ANTHROPIC_", "OPENAI_")

    def __init__(self, root: Path | str, env: dict[str, str] | None = None,
                 only: Sequence[str] | None = None) -> None:
        root = Path(root)
        self.cwd = root / "work"
        self.home = root / "home"
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(self.DROPPED)}
        self.env.update({"SIGIL_HOME": str(self.home), "NO_COLOR": "1", "COLUMNS": "120",
                         # A monitored run (--monitor) never takes the default monitor port
                         # (8000, the user's), and a monitor it starts does not linger.
                         "SIGIL_MONITOR_PORT": str(free_port()), "SIGIL_MONITOR_LINGER": "1",
                         # Nor does a run leave a resident worker behind (worker.auto_start).
                         "SIGIL_WORKER_AUTO_START": "0"})
        if only is not None:
            self.env["SIGIL_DISABLE_PLUGINS"] = all_plugins_but(*only)
        self.env.update(env or {})

    @staticmethod
    def argv(*args: str) -> list[str]:
        """The command line of ``sigil ARGS`` (for tests that start it themselves)."""
        return [sys.executable, "-m", "sigil_core", *args]

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), cwd=self.cwd, env={**self.env, **(env or {})},
            capture_output=True, text=True, timeout=timeout, input=input,
            stdin=None if input is not None else subprocess.DEVNULL, check=False
        )

    def start(self, *args: str, env: dict[str, str] | None = None,
              **popen: Any) -> subprocess.Popen[str]:
        """Start ``sigil ARGS`` without waiting (a server, a run to watch while it works):
        stdout and stderr piped as text unless ``popen`` says otherwise."""
        options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE,
                                   "stdin": subprocess.DEVNULL, **popen}
        return subprocess.Popen(self.argv(*args), cwd=self.cwd, env={**self.env, **(env or {})},
                                text=True, **options)

    def json(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
        """Run ``sigil ARGS``, which must succeed (the test fails with its stderr otherwise), and
        return its standard output parsed as JSON."""
        proc = self(*args, env=env, timeout=timeout)
        assert proc.returncode == 0, f"sigil {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
        return json.loads(proc.stdout)

    def write_config(self, config: str | dict[str, Any]) -> Path:
        """Write ``home/config.yaml``: the text given, or a mapping as YAML."""
        if not isinstance(config, str):
            import yaml

            config = yaml.safe_dump(config, sort_keys=False)
        path = self.home / "config.yaml"
        path.write_text(config, encoding="utf-8")
        return path

    @property
    def agents_dir(self) -> Path:
        """Where saved agents go (``home/agents``)."""
        return self.home / "agents"

    @property
    def sessions(self) -> Path:
        return self.cwd / "outputs" / "sessions"

    def session_json(self, session_id: str | None = None) -> dict[str, Any]:
        """The session record (``.json``) of ``session_id``, or the only one of the runs so
        far."""
        files = ([self.sessions / f"{session_id}.json"] if session_id
                 else sorted(self.sessions.glob("*.json")))
        assert len(files) == 1, files
        data: dict[str, Any] = json.loads(files[0].read_text())
        return data

    def last_session(self) -> dict[str, Any]:
        """The newest session record (``.json``), for tests that run several times."""
        files = sorted(self.sessions.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        assert files, f"no session in {self.sessions}"
        data: dict[str, Any] = json.loads(files[-1].read_text())
        return data

    def session_jsonl(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """The events (``.jsonl``) of ``session_id``, or of the only session so far."""
        files = ([self.sessions / f"{session_id}.jsonl"] if session_id
                 else sorted(p for p in self.sessions.glob("*.jsonl")
                             if not p.name.endswith(".cassette.jsonl")))
        assert len(files) == 1, files
        return [json.loads(line) for line in files[0].read_text().splitlines() if line]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a test server; the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_in_worker(cli: SigilCLI, sdk: str, *args: str) -> list[dict[str, Any]]:
    """For a provider whose SDK is preloaded (module ``sdk``): start ``sigil worker`` for the
    CLI's home, run ``sigil orchestrate ARGS`` (the lead example without ARGS) from it, stop it;
    asserts the run succeeded, was forked from the worker, and found the SDK imported. Returns
    the run's events."""
    started = cli("worker", "start", "--idle-timeout", "120")
    assert started.returncode == 0, started.stderr
    assert sdk in started.stdout, started.stdout  # the SDKs the worker imported
    try:
        proc = cli("orchestrate", *(args or (LEAD_TASK,)))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(cli("worker", "status", "--json").stdout)["runs"] == 1
    finally:
        cli("worker", "stop")
    events = cli.session_jsonl()
    imports = [e for e in events if e["operation"] == "sdk_import"]
    assert [e["metadata"]["module"] for e in imports] == [sdk]
    assert imports[0]["metadata"]["already_imported"] is True
    return events


def all_plugins_but(*names: str) -> str:
    """``SIGIL_DISABLE_PLUGINS`` for a test of some plugins: every installed plugin (entry
    point in group ``sigil``) but ``names`` is switched off, so only they and the core's
    builtins run (other plugins' own choices, e.g. a second router, stay out of the way)."""
    from importlib.metadata import entry_points

    return ",".join(sorted({ep.name for ep in entry_points(group="sigil")} - set(names)))


def events_named(events: Sequence[dict[str, Any]], operation: str,
                 message_prefix: str = "") -> list[dict[str, Any]]:
    """The events of ``operation`` (whose message starts with ``message_prefix``)."""
    return [e for e in events if e.get("operation") == operation
            and str(e.get("message", "")).startswith(message_prefix)]
