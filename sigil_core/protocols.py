"""The shapes of the objects plugins register. Structural: no base class to inherit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .config import Config
    from .llm import LLMRequest, LLMResponse
    from .model import LogEvent, PlanStep, ReasoningResult
    from .run import Run, StepContext


@runtime_checkable
class Provider(Protocol):
    """An LLM provider. ``name`` prefixes the model in events (``anthropic:claude-...``).

    Optional: ``bind(config)`` returns the per-run instance; a provider with named endpoint
    profiles also has ``profiles(config) -> list[str]`` and takes ``bind(config, profile=NAME)``
    (chosen with ``--provider NAME:PROFILE`` or a bare profile name; see ``choose_provider``).
    ``setup_hint``: what a user sets to make it available ("set ANTHROPIC_API_KEY ..."), said
    when it is asked for by name and not available. ``prepare()``: called once a run has
    chosen this provider, before anything else the run does; it must return at once and may
    start slow work in the background, e.g. ``sigil_core.preload.preload("its_sdk")``.
    """

    name: str
    #: Higher wins when no provider is named; the offline provider has priority 0.
    priority: int
    #: Optional: a line shown with every result made with this provider (None: nothing).
    notice: str | None

    def available(self, config: Config) -> bool:
        """True when it can run with this config (e.g. its API key is set)."""

    def estimate_input_tokens(self, request: LLMRequest) -> int:
        """A fast local estimate of the request's input tokens, used for the budget check."""

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Send the request. ``request.max_tokens`` is already capped to the budget."""


@runtime_checkable
class Strategy(Protocol):
    """A reasoning strategy, chosen by name for a step."""

    name: str

    async def execute(self, run: Run, step: PlanStep, context: StepContext) -> ReasoningResult:
        """Reason through the step and return its output. Raise to let the run fall back."""


@runtime_checkable
class Tool(Protocol):
    """A callable tool. ``input_schema`` is a JSON Schema object for its arguments."""

    name: str
    description: str
    input_schema: dict[str, Any]

    async def call(self, arguments: dict[str, Any]) -> Any:
        """Run the tool; raise ToolError on failure."""


@runtime_checkable
class LogSink(Protocol):
    """Receives every event of a run in batches (after buffering).

    Optional: ``bind(run)`` returning a per-run instance (then ``open`` and the rest are called
    on it), ``path``, the file the run's events went to (listed as a session file), and
    ``close_on_loop = True`` for a sink whose ``close`` is quick (local files, no network, no
    waiting): it is then called on the run's event loop. Other sinks are closed on a worker
    thread, so a close that waits (an exporter's flush) does not hold up other runs. A sink
    with a coroutine ``aclose(run, record)`` is awaited on the run's event loop instead of
    closed: for a close that waits without blocking, e.g. to share one write with the other
    runs ending at the same moment (the builtin daily log does). ``close`` and ``aclose``
    report a failed write by raising ``OSError`` or ``StorageError``: the run then exits 4.
    """

    name: str

    def open(self, run: Run) -> None: ...

    def write(self, events: Sequence[LogEvent]) -> None: ...

    def close(self, run: Run, record: dict[str, Any]) -> None:
        """Called once at the end with the session record (events omitted) and summary."""


@runtime_checkable
class MonitorTransport(Protocol):
    """Streams a run's events to live monitors; started only for monitored runs."""

    name: str

    async def start(self, run: Run) -> str | None:
        """Start streaming; return a line for the user (e.g. the URL) or None."""

    def publish(self, events: Sequence[LogEvent]) -> None:
        """Hand over a batch; must not block the run."""

    async def stop(self) -> None: ...


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors for memory retrieval: one vector of ``dimensions`` floats per
    text."""

    name: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...
