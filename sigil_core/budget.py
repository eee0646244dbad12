"""The token budget: a hard limit with per-component allocations and two alert levels.

Before each LLM call the gateway *reserves* the call's estimated input plus its ``max_tokens``;
a call that cannot fit is never sent (:class:`BudgetExhaustedError`, TOKEN_001) and
``max_tokens`` is capped to what is left. After the call the reservation is replaced by the
usage the provider reported. Concurrent calls each hold their reservation, so together they
cannot overshoot either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from .errors import BudgetExhaustedError
from .model import BudgetSnapshot, TokenUsage

#: The smallest answer worth asking for: a call with less room than this is refused.
MIN_OUTPUT_TOKENS = 16


@attrs.define
class Reservation:
    component: str
    tokens: int
    max_tokens: int
    released: bool = False


class BudgetTracker:
    """Tracks used and reserved tokens against ``total``; emits alerts through ``on_alert``."""

    def __init__(
        self,
        total: int,
        allocations: dict[str, float] | None = None,
        warning_threshold: float = 0.80,
        critical_threshold: float = 0.95,
        on_alert: Callable[[str, BudgetSnapshot], None] | None = None,
        pool: Any = None,
    ) -> None:
        if total <= 0:
            raise ValueError("budget total must be positive")
        self.total = total
        self.allocations = dict(allocations or {})
        self.warning_threshold = warning_threshold
        self.critical_threshold = critical_threshold
        self.on_alert = on_alert
        #: A budget shared with other runs (``sigil batch --budget-total``): anything with
        #: ``used``, ``reserved`` and ``available``, kept in step with this tracker's books.
        self.pool = pool
        self.used = 0
        self.reserved = 0
        self.by_component: dict[str, int] = {}
        self._alerted: set[str] = set()
        self._snapshot: BudgetSnapshot | None = None

    # ----------------------------------------------------------------- queries

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.used)

    @property
    def available(self) -> int:
        """What a new call may still reserve (in this run, and in the shared pool if any)."""
        own = max(0, self.total - self.used - self.reserved)
        return own if self.pool is None else min(own, self.pool.available)

    def snapshot(self) -> BudgetSnapshot:
        # Every event carries one; it only changes when tokens are charged.
        if self._snapshot is not None:
            return self._snapshot
        self._snapshot = BudgetSnapshot(
            total_budget=self.total,
            used=self.used,
            remaining=self.remaining,
            percentage_used=round(100.0 * self.used / self.total, 2),
        )
        return self._snapshot

    def allocation(self, component: str) -> int:
        """The component's share of the total, in tokens (the whole budget if unallocated)."""
        share = self.allocations.get(component)
        return self.total if share is None else int(self.total * share)

    def component_remaining(self, component: str) -> int:
        """Tokens left in the component's allocation (never more than the budget has left)."""
        left = self.allocation(component) - self.by_component.get(component, 0)
        return max(0, min(left, self.available))

    # ----------------------------------------------------------------- booking

    def reserve(self, component: str, input_estimate: int, max_tokens: int,
                *, operation: str | None = None) -> Reservation:
        """Reserve room for a call or raise BudgetExhaustedError; caps ``max_tokens``."""
        room = self.available - input_estimate
        if room < min(MIN_OUTPUT_TOKENS, max_tokens):
            raise BudgetExhaustedError(
                f"Used {self.used:,}/{self.total:,} tokens; the next call needs about "
                f"{input_estimate + min(MIN_OUTPUT_TOKENS, max_tokens):,} and only "
                f"{self.available:,} are left. Cannot continue.",
                context={"last_component": component, "last_operation": operation,
                         "input_estimate": input_estimate, "available": self.available},
            )
        capped = min(max_tokens, room)
        res = Reservation(component, input_estimate + capped, capped)
        self.reserved += res.tokens
        if self.pool is not None:
            self.pool.reserved += res.tokens
        return res

    def commit(self, reservation: Reservation, usage: TokenUsage) -> None:
        """Replace the reservation by what the call really used."""
        self.release(reservation)
        self.charge(reservation.component, usage.total_tokens)

    def release(self, reservation: Reservation) -> None:
        """The call did not happen (or failed before usage was known)."""
        if not reservation.released:
            reservation.released = True
            self.reserved -= reservation.tokens
            if self.pool is not None:
                self.pool.reserved -= reservation.tokens

    def charge(self, component: str, tokens: int) -> None:
        self.used += tokens
        if self.pool is not None:
            self.pool.used += tokens
        self._snapshot = None
        self.by_component[component] = self.by_component.get(component, 0) + tokens
        self._check_alerts()

    def _check_alerts(self) -> None:
        fraction = self.used / self.total
        for level, threshold in (("warning", self.warning_threshold),
                                 ("critical", self.critical_threshold)):
            if fraction >= threshold and level not in self._alerted:
                self._alerted.add(level)
                if self.on_alert:
                    self.on_alert(level, self.snapshot())
