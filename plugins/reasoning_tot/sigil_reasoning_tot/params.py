"""The strategy's parameters: defaults, the ``tree_of_thoughts:`` config section, overrides.

Precedence, highest first: the step's entry under ``steps:``, the agent's entry under
``agents:``, the section's top-level keys, the defaults below::

    # ~/.sigil/config.yaml
    tree_of_thoughts:
      n_select_sample: 3          # every step searched with ToT keeps 3 states per level
      agents:
        analyst: {depth: 3}       # steps run by agent "analyst"
      steps:
        assess_bant: {method_evaluate: value, n_evaluate_sample: 3}

A misspelt key or a bad value is a :class:`~sigil_core.errors.ConfigError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

SECTION = "tree_of_thoughts"
CHOICES = {
    "method_generate": ("propose", "sample"),
    "method_evaluate": ("value", "vote"),
    "method_select": ("greedy", "sample"),
    "duplicate_thoughts": ("keep", "drop"),
}


@attrs.define(frozen=True)
class ToTParams:
    """The reference's arguments (``run.py``), plus what a run needs (tokens, temperature).

    Defaults are chosen for plan steps, not Game of 24: a vote over the candidates costs one
    call per level instead of one per candidate, and each level is two model calls in sequence
    (the proposals, then the vote), so the number of levels follows the step's complexity
    (:data:`LEVELS_BY_COMPLEXITY`): one level of complete candidate answers and a vote up to
    complex steps, two for critical ones. The reference's Game-of-24 setting is
    ``method_evaluate=value, n_evaluate_sample=3, n_select_sample=5, depth=4``.
    """

    method_generate: str = "propose"
    method_evaluate: str = "vote"
    method_select: str = "greedy"
    #: Proposals asked for per state (propose) or samples drawn per state (sample).
    n_generate_sample: int = 3
    #: Judgements per state (value) or votes per level (vote).
    n_evaluate_sample: int = 1
    #: ``b``: states kept per level.
    n_select_sample: int = 2
    #: Thought levels; None: by the step's complexity (:data:`LEVELS_BY_COMPLEXITY`).
    depth: int | None = None
    #: Sampling temperature for proposals, samples and judgements (the reference's 0.7).
    temperature: float = 0.7
    #: max_tokens of each thought/judgement call.
    max_tokens: int = 512
    #: Share of the reasoning allocation left when the step starts that the search may spend.
    budget_share: float = 0.5
    #: Seed for ``method_select: sample`` (None: not reproducible).
    seed: int | None = None
    #: Propose mode keeps every proposal the model returns, as the reference does (its
    #: "propose1" runs have 5-78 candidates per step; ``n_generate_sample`` only sizes the
    #: request). An integer caps the proposals kept per state.
    max_proposals: int | None = None
    #: ``keep`` (the reference): a thought proposed twice for one parent stays a candidate
    #: (valued 0 as a duplicate by the ``value`` evaluator, so it can still take a beam slot);
    #: ``drop``: it is one branch.
    duplicate_thoughts: str = "keep"

    def __attrs_post_init__(self) -> None:
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, "
                                 f"not {getattr(self, key)!r}")
        for key in ("n_generate_sample", "n_evaluate_sample", "n_select_sample", "depth",
                    "max_tokens"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, not {getattr(self, key)!r}")
        if self.max_proposals is not None and self.max_proposals < 1:
            raise ValueError(f"max_proposals must be at least 1 or null, not {self.max_proposals!r}")
        if not 0 < self.budget_share <= 1:
            raise ValueError(f"budget_share must be in (0, 1], not {self.budget_share!r}")

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def levels(self, complexity: str | None) -> int:
        """The search's depth for a step of this complexity label: ``depth`` when set."""
        if self.depth is not None:
            return self.depth
        return LEVELS_BY_COMPLEXITY.get(complexity or "", 1)


#: Levels of a search whose ``depth`` is not configured. Every level waits for two model calls
#: (proposals, then the vote over them): one level already compares complete candidate answers,
#: a second one (plan, then answer) is paid only where a step is critical.
LEVELS_BY_COMPLEXITY = {"simple": 1, "moderate": 1, "complex": 1, "critical": 2}


FIELDS = {f.name: f.type for f in attrs.fields(ToTParams)}


def resolve(section: Mapping[str, Any] | None, *, agent: str | None = None,
            step: str | None = None, cls: type[Any] = ToTParams,
            name: str = SECTION) -> Any:
    """The parameters for one step from the config section (see the module docstring).

    ``cls`` is the parameters class (:class:`ToTParams`, or ``MCTSParams`` for the ``mcts:``
    section, which has the same layers). Raises ValueError naming the bad key
    (``tree_of_thoughts.steps.assess_bant.depht``).
    """
    fields = {f.name for f in attrs.fields(cls)}
    defaults = cls()
    section = dict(section or {})
    merged: dict[str, Any] = {}
    layers: list[tuple[str, Any]] = [(name, {k: v for k, v in section.items()
                                             if k not in ("agents", "steps")})]
    for key, which in (("agents", agent), ("steps", step)):
        table = section.get(key) or {}
        if not isinstance(table, Mapping):
            raise ValueError(f"{name}.{key} must be a mapping of names to settings")  # noqa: TRY004 - callers catch ValueError
        if which is not None and which in table:
            layers.append((f"{name}.{key}.{which}", table[which]))
    for where, layer in layers:
        if layer is None:
            continue
        if not isinstance(layer, Mapping):
            raise ValueError(f"{where} must be a mapping")  # noqa: TRY004 - callers catch ValueError
        for key, value in layer.items():
            if key not in fields:
                raise ValueError(f"{where}.{key} is not a {name} setting "
                                 f"(known: {', '.join(sorted(fields))})")
            merged[key] = _coerce(f"{where}.{key}", getattr(defaults, key), key, value)
    try:
        return cls(**merged)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def step_params(run: Any, step: Any, context: Any, *, cls: type[Any] = ToTParams,
                name: str = SECTION) -> Any:
    """:func:`resolve` for one step of a run (its agent and step name), a bad setting as a
    ``ConfigError`` that names the key and the section to fix."""
    agent = getattr(context, "agent", None)
    try:
        return resolve(run.config.section(name), agent=getattr(agent, "name", None),
                       step=getattr(step, "name", None), cls=cls, name=name)
    except ValueError as exc:
        from sigil_core import ConfigError

        raise ConfigError(f"{exc}. Fix the {name} section of the config.") from None


#: Settings that may be null; every other setting has its default's type.
NULLABLE = ("seed", "max_proposals", "rollout_depth")


def _coerce(where: str, default: Any, key: str, value: Any) -> Any:
    if key in NULLABLE or default is None:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise ValueError(f"{where} must be an integer or null, not {value!r}")
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
        raise ValueError(f"{where} must be {'a boolean' if isinstance(default, bool) else 'a number'}"
                         f", not {value!r}")
    if isinstance(default, int):
        if isinstance(value, int):
            return value
        raise ValueError(f"{where} must be an integer, not {value!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)):
            return float(value)
        raise ValueError(f"{where} must be a number, not {value!r}")
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, not {value!r}")  # noqa: TRY004 - callers catch ValueError
    return value
