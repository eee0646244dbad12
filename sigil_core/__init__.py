"""Sigil: an agent-orchestration framework whose every phase is a plugin.

The public API is what ``__all__`` lists (see ``docs/api.md``). It follows semantic versioning:
a name listed here keeps its meaning within a major version; everything else in the package is
internal and may change in any release. Besides this module, plugins may use the public
subpackages :mod:`sigil_core.memory` (the kit of memory backends) and :mod:`sigil_core.testing`
(helpers for testing plugins), and the hook specifications in :mod:`sigil_core.hookspecs`.

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

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    # the data model (attrs classes crossing the plugin boundary)
    "Agent": "model", "Contract": "model", "Deliverable": "model", "ErrorInfo": "model",
    "ExecutionResult": "model", "ExtractionResult": "model", "LogEvent": "model",
    "MemoryContext": "model", "MemoryItem": "model", "OrchestrationResult": "model",
    "Plan": "model", "PlanStep": "model", "ReasoningResult": "model", "RouteDecision": "model",
    "StepResult": "model", "TokenUsage": "model", "ValidationResult": "model",
    "structure": "model", "unstructure": "model",
    # a run, as phase hooks and strategies see it
    "Run": "run", "StepContext": "run", "Operation": "run", "current_run": "run",
    "current_operation": "run",
    # LLM requests and answers (providers)
    "LLMRequest": "llm", "LLMResponse": "llm", "estimate_tokens": "constants",
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
    "STRATEGY_ORDER": "strategies",
    # errors (each with its error code)
    "SigilError": "errors", "UsageError": "errors", "ConfigError": "errors",
    "PluginError": "errors", "BudgetExhaustedError": "errors", "LLMError": "errors",
    "StructuredOutputError": "errors", "PlanError": "errors", "StrategyError": "errors",
    "FallbackExhaustedError": "errors", "ContractError": "errors", "ToolError": "errors",
    "MemoryBackendError": "errors", "StorageError": "errors",
    # files
    "write_atomic": "files", "write_text_atomic": "files", "sigil_home": "files",
    # embedding Sigil in an application (and end-to-end tests)
    "PluginHost": "plugins", "Orchestrator": "orchestrator", "RunOptions": "orchestrator",
    "Outcome": "orchestrator",
}

__all__ = [
    "COMPONENTS", "INTENTS", "LEVELS", "MEMORY_TYPES", "STEP_COMPLEXITIES",
    "STRATEGY_ORDER",
    "Agent",
    "BudgetExhaustedError",
    "Config",
    "ConfigError",
    "Contract",
    "ContractError",
    "Deliverable",
    "Embedder",
    "ErrorInfo",
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
    "StructuredOutputError",
    "TokenUsage",
    "Tool",
    "ToolError",
    "UsageError",
    "ValidationResult",
    "__version__",
    "choose_strategy",
    "current_operation",
    "current_run",
    "estimate_tokens",
    "hookimpl",
    "load_config",
    "read_section",
    "sigil_home",
    "structure",
    "unstructure",
    "write_atomic",
    "write_text_atomic",
]  # the names of _EXPORTS and the two above, checked by a test


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sigil_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sigil_core.{module}"), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see; kept in step with _EXPORTS by a test
    from .config import Config, load_config, read_section
    from .constants import (
        COMPONENTS,
        INTENTS,
        LEVELS,
        MEMORY_TYPES,
        STEP_COMPLEXITIES,
        estimate_tokens,
    )
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
    from .files import sigil_home, write_atomic, write_text_atomic
    from .llm import LLMRequest, LLMResponse
    from .model import (
        Agent,
        Contract,
        Deliverable,
        ErrorInfo,
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
        structure,
        unstructure,
    )
    from .orchestrator import Orchestrator, Outcome, RunOptions
    from .plugins import PluginHost
    from .protocols import Embedder, LogSink, MonitorTransport, Provider, Strategy, Tool
    from .run import Operation, Run, StepContext, current_operation, current_run
    from .strategies import STRATEGY_ORDER, StrategyChoice, choose_strategy
