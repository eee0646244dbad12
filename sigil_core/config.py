"""Configuration: command-line flag > environment variable > config file > defaults.

The config file is ``$SIGIL_HOME/config.yaml`` (``~/.sigil/config.yaml`` by default, or the
file named by ``--config`` / ``SIGIL_CONFIG``). Its known sections (``cli``, ``logging``,
``budget``, ``plugins``, ``llm``, ``outputs``, ``strategies``) are checked strictly: a misspelt key is an error
naming the file and the key. Any other top-level section belongs to a plugin and is handed to
it untouched through :meth:`Config.section`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, TypeVar

import attrs

from .constants import LEVELS
from .errors import ConfigError
from .files import read_yaml as _read_yaml
from .files import sigil_home
from .model import converter, describe_structure_error

DEFAULT_BUDGET = 256_000
DEFAULT_ALLOCATIONS: dict[str, float] = {
    "reasoning": 0.45, "memory": 0.15, "planner": 0.12, "contracts": 0.10, "tools": 0.08,
    "router": 0.04, "context": 0.03, "orchestrator": 0.02, "evolution": 0.01,
}


@attrs.define
class MonitorConfig:
    enabled: bool = False
    port: int = 8000
    host: str = "127.0.0.1"


@attrs.define
class OutputConfig:
    """What ``sigil orchestrate --output FILE`` writes."""

    #: The file's format: json (the only one; stdout has ``--format``).
    default_format: str = "json"
    #: Also write the run's events (``logs``) into the file.
    include_logs: bool = False


@attrs.define
class WorkerConfig:
    """The resident worker that ``sigil orchestrate`` starts (see ``sigil_core/worker.py``)."""

    #: After a run in its own process, start a worker for this SIGIL_HOME when none serves it,
    #: so the runs after it start warm. Never when the ``CI`` variable is set (one-off
    #: machines); SIGIL_WORKER_AUTO_START=0|1 overrides; SIGIL_NO_WORKER=1 turns workers off.
    auto_start: bool = True
    #: Seconds without a run after which an auto-started worker exits.
    idle_timeout: float = 1800.0


@attrs.define
class CliConfig:
    default_budget: int | None = None
    monitor: MonitorConfig = attrs.Factory(MonitorConfig)
    output: OutputConfig = attrs.Factory(OutputConfig)
    worker: WorkerConfig = attrs.Factory(WorkerConfig)


@attrs.define
class RotationConfig:
    max_size_mb: float = 100
    max_files: int = 30


@attrs.define
class FileLogConfig:
    enabled: bool = True
    path: str = "outputs/logs"
    format: str = "jsonl"
    rotation: RotationConfig = attrs.Factory(RotationConfig)
    retention_days: int = 30
    compress: bool = True
    #: A single aggregate file instead of one per day (``SIGIL_LOG_FILE``).
    file: str | None = None


@attrs.define
class StreamConfig:
    enabled: bool = True
    port: int = 8000
    #: How often a live monitor hears from the server (the default of its clients).
    heartbeat_interval_ms: int = 5000


@attrs.define
class LoggingConfig:
    level: str = "info"
    buffer_size: int = 100
    flush_interval_ms: int = 100
    file: FileLogConfig = attrs.Factory(FileLogConfig)
    stream: StreamConfig = attrs.Factory(StreamConfig)


@attrs.define
class BudgetConfig:
    total: int = DEFAULT_BUDGET
    warning_threshold: float = 0.80
    critical_threshold: float = 0.95
    allocations: dict[str, float] = attrs.Factory(lambda: dict(DEFAULT_ALLOCATIONS))


@attrs.define
class PluginsConfig:
    disabled: list[str] = attrs.Factory(list)
    #: Which plugin runs a phase when several implement it, e.g. {retrieve: memory_sqlite}.
    use: dict[str, str] = attrs.Factory(dict)


@attrs.define
class LLMConfig:
    #: Provider name; None picks the available provider with the highest priority.
    provider: str | None = None
    #: Default model id for the provider; ``models`` overrides it per component.
    model: str | None = None
    models: dict[str, str] = attrs.Factory(dict)
    max_tokens: int = 1024
    temperature: float | None = None
    #: Offline provider: simulated latency per call, for demos and benchmarks.
    offline_latency_ms: float = 0.0
    #: When a run stops (budget, Ctrl-C, SIGTERM), calls already sent get this long to finish
    #: and have their real usage booked; after it they are cancelled and booked at their
    #: reservation, marked estimated.
    stop_grace_s: float = 10.0
    #: Record every LLM exchange in ``<session>.cassette.jsonl`` for ``sigil replay``:
    #: ``auto`` (real providers), ``always`` (offline runs too) or ``never``.
    cassette: str = "auto"


@attrs.define
class StrategiesConfig:
    """How steps get their reasoning strategy (see :mod:`sigil_core.strategies`)."""

    #: Complexity ranges to strategy names, e.g. {"0.5-0.7": self_consistency}.
    ranges: dict[str, str] = attrs.Factory(dict)
    #: The fallback chain, strongest first (None: mcts, react, tree_of_thoughts, ...).
    fallback: list[str] | None = None


@attrs.define
class OutputsConfig:
    dir: str = "outputs"


@attrs.define
class Config:
    cli: CliConfig = attrs.Factory(CliConfig)
    logging: LoggingConfig = attrs.Factory(LoggingConfig)
    budget: BudgetConfig = attrs.Factory(BudgetConfig)
    plugins: PluginsConfig = attrs.Factory(PluginsConfig)
    llm: LLMConfig = attrs.Factory(LLMConfig)
    outputs: OutputsConfig = attrs.Factory(OutputsConfig)
    strategies: StrategiesConfig = attrs.Factory(StrategiesConfig)
    #: Plugin sections (any other top-level key), untouched.
    sections: dict[str, Any] = attrs.Factory(dict)
    home: Path = attrs.Factory(lambda: sigil_home())
    path: Path | None = None

    def section(self, name: str) -> dict[str, Any]:
        """A plugin's own section of the config file ({} when absent)."""
        value = self.sections.get(name)
        return value if isinstance(value, dict) else {}

    def read_section(self, name: str, cls: type[T]) -> T:
        """A plugin's section as an instance of the attrs class ``cls``: see :func:`read_section`."""
        return read_section(self, name, cls)

    @property
    def outputs_dir(self) -> Path:
        return Path(self.outputs.dir)

    @property
    def agents_dir(self) -> Path:
        return self.home / "agents"


T = TypeVar("T")


def read_section(config: Config | None, name: str, cls: type[T]) -> T:
    """Read the config file's section ``name`` into the attrs class ``cls``.

    Every field of ``cls`` needs a default (an absent section gives ``cls()``). The errors are
    the same for every plugin: a :class:`~sigil_core.errors.ConfigError` naming the file, the
    key and the problem (``config.yaml: memory.k: invalid value for type, expected int``), an
    unknown key with the closest known one, and what an attrs validator of ``cls`` raised.
    """
    import difflib

    where = str(config.path) if config is not None and config.path else "config"
    raw = config.sections.get(name) if config is not None else None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: '{name}' must be a mapping, got {type(raw).__name__}")
    known = [f.name for f in attrs.fields(cls)]  # type: ignore[arg-type]
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{where}: {name}.{key}: unknown setting; {hint}known: "
                              f"{', '.join(known)}")
    try:
        return _strict.structure(raw, cls)
    except Exception as exc:  # noqa: BLE001 - cattrs errors and attrs validators alike
        msg = describe_structure_error(exc, f"'{name}' section").replace("$.", f"{name}.")
        if msg.endswith("@ $"):  # an attrs validator of the class: its own words say more
            leaf = _first_leaf(exc)
            msg = f"invalid '{name}' section: {leaf}"
        raise ConfigError(f"{where}: {msg}") from None


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


KNOWN_SECTIONS = ("cli", "logging", "budget", "plugins", "llm", "outputs", "strategies")
_strict = converter.copy(forbid_extra_keys=True)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the config file (if any), apply environment variables, validate.

    Raises ConfigError with the file, the key and the problem; never a traceback.
    """
    home = sigil_home()
    explicit = path or os.environ.get("SIGIL_CONFIG")
    cfg_path = Path(explicit).expanduser() if explicit else home / "config.yaml"
    data: dict[str, Any] = {}
    if cfg_path.exists() or explicit:
        data = _read_yaml(cfg_path)
    known = {k: v for k, v in data.items() if k in KNOWN_SECTIONS}
    for key, value in known.items():
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{cfg_path}: '{key}' must be a mapping, got {type(value).__name__}")
    known = {k: v for k, v in known.items() if v is not None}
    try:
        cfg = _strict.structure(known, Config)
    except Exception as exc:  # noqa: BLE001
        msg = describe_structure_error(exc, "configuration")
        raise ConfigError(f"{cfg_path}: {msg}. Fix or remove the key.") from None
    cfg.sections = {k: v for k, v in data.items() if k not in KNOWN_SECTIONS}
    cfg.home = home
    cfg.path = cfg_path if cfg_path.exists() else None
    if cfg.cli.default_budget is not None and "total" not in (known.get("budget") or {}):
        cfg.budget.total = cfg.cli.default_budget
    _apply_env(cfg)
    _validate(cfg, str(cfg_path) if cfg.path else "environment")
    return cfg


def _env_int(name: str, minimum: int = 1) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"environment variable {name}={value} must be at least {minimum}")
    return value


def _apply_env(cfg: Config) -> None:
    level = os.environ.get("SIGIL_LOG_LEVEL")
    if level:
        cfg.logging.level = level.lower()
        if cfg.logging.level not in LEVELS:
            raise ConfigError(f"environment variable SIGIL_LOG_LEVEL={level!r} is not one of "
                              f"{', '.join(LEVELS)}")
    if os.environ.get("SIGIL_LOG_FILE"):
        cfg.logging.file.file = os.environ["SIGIL_LOG_FILE"]
    if (v := _env_int("SIGIL_TOKEN_BUDGET")) is not None:
        cfg.budget.total = v
    if (v := _env_int("SIGIL_MONITOR_PORT", 0)) is not None:
        if v > 65535:
            raise ConfigError(f"environment variable SIGIL_MONITOR_PORT={v} is not a port")
        cfg.logging.stream.port = v
        cfg.cli.monitor.port = v
    if (v := _env_int("SIGIL_BUFFER_SIZE")) is not None:
        cfg.logging.buffer_size = v
    if (v := _env_int("SIGIL_FLUSH_INTERVAL")) is not None:
        cfg.logging.flush_interval_ms = v
    if os.environ.get("SIGIL_OUTPUTS_DIR"):
        cfg.outputs.dir = os.environ["SIGIL_OUTPUTS_DIR"]
    if os.environ.get("SIGIL_PROVIDER"):
        cfg.llm.provider = os.environ["SIGIL_PROVIDER"]
    if os.environ.get("SIGIL_MODEL"):
        cfg.llm.model = os.environ["SIGIL_MODEL"]
    raw = os.environ.get("SIGIL_WORKER_AUTO_START")
    if raw:
        flag = raw.strip().lower()
        if flag not in ("0", "1", "true", "false", "yes", "no"):
            raise ConfigError(f"environment variable SIGIL_WORKER_AUTO_START={raw!r} must be 1 "
                              "or 0")
        cfg.cli.worker.auto_start = flag in ("1", "true", "yes")
    raw = os.environ.get("SIGIL_OFFLINE_LATENCY_MS")
    if raw:
        try:
            latency = float(raw)
        except ValueError:
            latency = math.nan
        if not (math.isfinite(latency) and latency >= 0):
            raise ConfigError(f"environment variable SIGIL_OFFLINE_LATENCY_MS={raw!r} must be a "
                              "number of milliseconds, 0 or more")
        cfg.llm.offline_latency_ms = latency


def _validate(cfg: Config, where: str) -> None:
    def bad(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: {problem}")

    if cfg.logging.level not in LEVELS:
        raise bad("logging.level", f"{cfg.logging.level!r} is not one of {', '.join(LEVELS)}")
    if cfg.budget.total <= 0:
        raise bad("budget.total", "must be a positive number of tokens")
    b = cfg.budget
    if not 0 < b.warning_threshold < b.critical_threshold <= 1:
        raise bad("budget", "need 0 < warning_threshold < critical_threshold <= 1")
    for name, share in b.allocations.items():
        if not 0 <= share <= 1:
            raise bad(f"budget.allocations.{name}", f"{share} is not a share between 0 and 1")
    if (total := sum(b.allocations.values())) > 1.0 + 1e-9:
        raise bad("budget.allocations", f"the shares sum to {total:.2f}; they are parts of one "
                  "budget and must sum to at most 1.0")
    rot = cfg.logging.file
    for key, value, low in (("logging.file.rotation.max_size_mb", rot.rotation.max_size_mb, 0),
                            ("logging.file.rotation.max_files", rot.rotation.max_files, 1),
                            ("logging.file.retention_days", rot.retention_days, 1)):
        if not (math.isfinite(value) and (value > low if low == 0 else value >= low)):
            raise bad(key, f"{value} must be {'above 0' if low == 0 else f'at least {low}'}")
    latency = cfg.llm.offline_latency_ms
    if not (math.isfinite(latency) and latency >= 0):
        raise bad("llm.offline_latency_ms", f"{latency} must be a number of milliseconds, 0 "
                  "or more")
    if cfg.logging.buffer_size < 1:
        raise bad("logging.buffer_size", "must be at least 1")
    if cfg.logging.flush_interval_ms < 1:
        raise bad("logging.flush_interval_ms", "must be at least 1")
    for key, port in (("logging.stream.port", cfg.logging.stream.port),
                      ("cli.monitor.port", cfg.cli.monitor.port)):
        if not 0 <= port <= 65535:
            raise bad(key, f"{port} is not a port number")
    idle = cfg.cli.worker.idle_timeout
    if isinstance(idle, bool) or not isinstance(idle, (int, float)) or not (
            math.isfinite(idle) and idle >= 1):
        raise bad("cli.worker.idle_timeout", f"{idle!r} must be a number of seconds, 1 or more")
    if cfg.llm.max_tokens < 1:
        raise bad("llm.max_tokens", "must be at least 1")
    if cfg.cli.output.default_format != "json":
        raise bad("cli.output.default_format",
                  f"{cfg.cli.output.default_format!r}: --output files are json (the only format)")
    if not 100 <= cfg.logging.stream.heartbeat_interval_ms <= 600_000:
        raise bad("logging.stream.heartbeat_interval_ms",
                  f"{cfg.logging.stream.heartbeat_interval_ms} must be 100 to 600000")
    from .strategies import settings_from

    try:
        settings_from(cfg.strategies.ranges, cfg.strategies.fallback)
    except ValueError as exc:
        raise bad("strategies", str(exc)) from None
    if cfg.llm.cassette not in ("auto", "always", "never"):
        raise bad("llm.cassette", f"{cfg.llm.cassette!r} is not one of auto, always, never")
    if not 0 <= cfg.llm.stop_grace_s <= 3600:
        raise bad("llm.stop_grace_s", "must be between 0 and 3600 seconds")
