"""Sigil: an agent-orchestration framework whose every phase is a plugin.

The public API is what ``__all__`` lists (see ``docs/api.md``). It follows semantic versioning:
a name listed here keeps its meaning within a major version; everything else in the package is
internal and may change in any release. Besides this module, plugins may use the public
modules that :data:`PUBLIC_MODULES` lists (the hook specifications, the testing helpers, the
memory backends' kit, the providers' retry, section and preload helpers). A test fails on a plugin in
this repository that imports any other module of the package.

Names are imported on first use (PEP 562): ``from sigil_core import hookimpl`` costs nothing,
so plugin modules stay cheap to load on ``sigil --help``.
"""

from __future__ import annotations

import importlib
import sys

# First, before anything slow is imported: when this process is `sigil orchestrate` (or another
# command that runs a session), Ctrl-C and SIGTERM are recorded from here on and the session is
# saved as interrupted (see interrupts.py). Decided from the process's own command line, so
# importing sigil_core as a library changes nothing.
if getattr(sys, "orig_argv", None):
    importlib.import_module(f"{__name__}.interrupts").install_for_command_line(sys.orig_argv)

from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.1.0"

#: Marks a hook implementation: ``@hookimpl`` (``tryfirst``/``trylast``/``wrapper`` as in pluggy).
hookimpl = pluggy.HookimplMarker("sigil")

#: The modules a plugin may import (besides this one): documented in docs/api.md, each name in
#: them covered by semantic versioning as this module's ``__all__`` is.
PUBLIC_MODULES: tuple[str, ...] = (
    "sigil_core",
    "sigil_core.hookspecs",
    "sigil_core.testing", "sigil_core.testing.server", "sigil_core.testing.schema_instance",
    "sigil_core.memory", "sigil_core.memory.consolidation", "sigil_core.memory.embedders",
    "sigil_core.memory.fusion", "sigil_core.memory.phases", "sigil_core.memory.testing",
    "sigil_core.memory.text",
    "sigil_core.retries", "sigil_core.sections", "sigil_core.preload",
)

#: Public name -> the module that defines it ("module:name" when it is defined under another
#: name there).
_EXPORTS: dict[str, str] = {
    # the data model (attrs classes crossing the plugin boundary)
    "Agent": "model", "Contract": "model", "Deliverable": "model", "ErrorInfo": "model",
    "ExecutionResult": "model", "ExtractionResult": "model", "LogEvent": "model",
    "MemoryContext": "model", "MemoryItem": "model", "OrchestrationResult": "model",
    "Plan": "model", "PlanStep": "model", "ReasoningResult": "model", "RouteDecision": "model",
    "StepResult": "model", "TokenUsage": "model", "ValidationResult": "model",
    "ExecutionContext": "model", "BudgetSnapshot": "model",
    "structure": "model", "unstructure": "model", "utcnow": "model", "iso_ms": "model",
    # a run, as phase hooks and strategies see it
    "Run": "run", "StepContext": "run", "Operation": "run", "current_run": "run",
    "current_operation": "run", "tool_is_idempotent": "run",
    "MIN_OUTPUT_TOKENS": "budget",
    # LLM requests and answers (providers)
    "LLMRequest": "llm", "LLMResponse": "llm", "estimate_tokens": "constants",
    # structured output (providers): JSON Schemas a tool-use API accepts, answers parsed back
    "answer_name": "schema", "extract_json": "schema", "needs_wrapping": "schema",
    "object_schema": "schema", "unwrap": "schema",
    # the vocabulary (defined once)
    "LEVELS": "constants", "INTENTS": "constants", "COMPONENTS": "constants",
    "STEP_COMPLEXITIES": "constants", "MEMORY_TYPES": "constants",
    # the shapes of registered objects
    "Provider": "protocols", "Strategy": "protocols", "Tool": "protocols",
    "LogSink": "protocols", "MonitorTransport": "protocols", "Embedder": "protocols",
    # configuration
    "Config": "config", "load_config": "config", "read_section": "config",
    # strategy selection
    "StrategyChoice": "strategies", "choose_strategy": "strategies",
    "STRATEGY_ORDER": "strategies", "StrategySettings": "strategies",
    "strategy_settings": "strategies:settings_for",
    "strategy_for_complexity": "strategies",
    # agents and contracts (handlers that build or edit agents)
    "AGENT_NAME": "agents", "agent_path": "agents", "get_agent": "agents",
    "load_agents": "agents", "read_agent_file": "agents", "save_agent": "agents",
    "validate_agent_name": "agents", "has_placeholder": "contracts",
    # errors (each with its error code)
    "SigilError": "errors", "UsageError": "errors", "ConfigError": "errors",
    "PluginError": "errors", "BudgetExhaustedError": "errors", "LLMError": "errors",
    "StructuredOutputError": "errors", "PlanError": "errors", "StrategyError": "errors",
    "FallbackExhaustedError": "errors", "ContractError": "errors", "ToolError": "errors",
    "MemoryBackendError": "errors", "StorageError": "errors",
    # files
    "write_atomic": "files", "write_text_atomic": "files", "sigil_home": "files",
    "PRIVATE_FILE": "files", "private_mkdir": "files", "private_open": "files",
    "private_opener": "files", "ensure_private_file": "files",
    # plugin commands (click): the process's config and host, tables as the core prints them
    "command_config": "cli:get_config", "command_host": "cli:get_host",
    "table": "tables", "print_table": "tables", "shorten": "tables",
    "attach_memory_commands": "memory_cli:attach",
    # embedding Sigil in an application (and end-to-end tests)
    "PluginHost": "plugins", "Orchestrator": "orchestrator", "RunOptions": "orchestrator",
    "Outcome": "orchestrator", "tune_gc_for_many_runs": "launch",
}

__all__ = [
    "AGENT_NAME",
    "COMPONENTS",
    "INTENTS",
    "LEVELS",
    "MEMORY_TYPES",
    "MIN_OUTPUT_TOKENS",
    "PRIVATE_FILE",
    "PUBLIC_MODULES",
    "STEP_COMPLEXITIES",
    "STRATEGY_ORDER",
    "Agent",
    "BudgetExhaustedError",
    "BudgetSnapshot",
    "Config",
    "ConfigError",
    "Contract",
    "ContractError",
    "Deliverable",
    "Embedder",
    "ErrorInfo",
    "ExecutionContext",
    "ExecutionResult",
    "ExtractionResult",
    "FallbackExhaustedError",
    "LLMError",
    "LLMRequest",
    "LLMResponse",
    "LogEvent",
    "LogSink",
    "MemoryBackendError",
    "MemoryContext",
    "MemoryItem",
    "MonitorTransport",
    "Operation",
    "OrchestrationResult",
    "Orchestrator",
    "Outcome",
    "Plan",
    "PlanError",
    "PlanStep",
    "PluginError",
    "PluginHost",
    "Provider",
    "ReasoningResult",
    "RouteDecision",
    "Run",
    "RunOptions",
    "SigilError",
    "StepContext",
    "StepResult",
    "StorageError",
    "Strategy",
    "StrategyChoice",
    "StrategyError",
    "StrategySettings",
    "StructuredOutputError",
    "TokenUsage",
    "Tool",
    "ToolError",
    "UsageError",
    "ValidationResult",
    "__version__",
    "agent_path",
    "answer_name",
    "attach_memory_commands",
    "choose_strategy",
    "command_config",
    "command_host",
    "current_operation",
    "current_run",
    "ensure_private_file",
    "estimate_tokens",
    "extract_json",
    "get_agent",
    "has_placeholder",
    "hookimpl",
    "iso_ms",
    "load_agents",
    "load_config",
    "needs_wrapping",
    "object_schema",
    "print_table",
    "private_mkdir",
    "private_open",
    "private_opener",
    "read_agent_file",
    "read_section",
    "save_agent",
    "shorten",
    "sigil_home",
    "strategy_for_complexity",
    "strategy_settings",
    "structure",
    "table",
    "tool_is_idempotent",
    "tune_gc_for_many_runs",
    "unstructure",
    "unwrap",
    "utcnow",
    "validate_agent_name",
    "write_atomic",
    "write_text_atomic",
]  # the names of _EXPORTS and the three above, checked by a test


def __getattr__(name: str) -> Any:
    where = _EXPORTS.get(name)
    if where is None:
        raise AttributeError(f"module 'sigil_core' has no attribute {name!r}")
    module, _, defined_as = where.partition(":")
    value = getattr(importlib.import_module(f"sigil_core.{module}"), defined_as or name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see; kept in step with _EXPORTS by a test
    from .agents import (
        AGENT_NAME,
        agent_path,
        get_agent,
        load_agents,
        read_agent_file,
        save_agent,
        validate_agent_name,
    )
    from .budget import MIN_OUTPUT_TOKENS
    from .cli import get_config as command_config
    from .cli import get_host as command_host
    from .config import Config, load_config, read_section
    from .constants import (
        COMPONENTS,
        INTENTS,
        LEVELS,
        MEMORY_TYPES,
        STEP_COMPLEXITIES,
        estimate_tokens,
    )
    from .contracts import has_placeholder
    from .errors import (
        BudgetExhaustedError,
        ConfigError,
        ContractError,
        FallbackExhaustedError,
        LLMError,
        MemoryBackendError,
        PlanError,
        PluginError,
        SigilError,
        StorageError,
        StrategyError,
        StructuredOutputError,
        ToolError,
        UsageError,
    )
    from .files import (
        PRIVATE_FILE,
        ensure_private_file,
        private_mkdir,
        private_open,
        private_opener,
        sigil_home,
        write_atomic,
        write_text_atomic,
    )
    from .launch import tune_gc_for_many_runs
    from .llm import LLMRequest, LLMResponse
    from .memory_cli import attach as attach_memory_commands
    from .model import (
        Agent,
        BudgetSnapshot,
        Contract,
        Deliverable,
        ErrorInfo,
        ExecutionContext,
        ExecutionResult,
        ExtractionResult,
        LogEvent,
        MemoryContext,
        MemoryItem,
        OrchestrationResult,
        Plan,
        PlanStep,
        ReasoningResult,
        RouteDecision,
        StepResult,
        TokenUsage,
        ValidationResult,
        iso_ms,
        structure,
        unstructure,
        utcnow,
    )
    from .orchestrator import Orchestrator, Outcome, RunOptions
    from .plugins import PluginHost
    from .protocols import Embedder, LogSink, MonitorTransport, Provider, Strategy, Tool
    from .run import (
        Operation,
        Run,
        StepContext,
        current_operation,
        current_run,
        tool_is_idempotent,
    )
    from .schema import answer_name, extract_json, needs_wrapping, object_schema, unwrap
    from .strategies import (
        STRATEGY_ORDER,
        StrategyChoice,
        StrategySettings,
        choose_strategy,
        strategy_for_complexity,
    )
    from .strategies import (
        settings_for as strategy_settings,
    )
    from .tables import print_table, shorten, table
