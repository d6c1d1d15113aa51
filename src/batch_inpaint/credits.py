"""The credit budget of a run (``--max-credits``): requests in flight count against it before they go out."""

from __future__ import annotations

from decimal import Decimal

from .errors import CreditsExhausted


class CreditBudget:
    """Reserve before each request, settle after it. ``per_request`` is the most one request may cost
    (the engine's `credits_per_request`); lost answers stay counted, since they may have been charged."""

    def __init__(self, limit: float | None, per_request: Decimal) -> None:
        self.limit = None if limit is None else Decimal(str(limit))
        self.per_request = per_request
        self.used = Decimal(0)
        self._reserved = Decimal(0)
        self._maybe_spent = Decimal(0)

    def reserve(self) -> None:
        """Raises CreditsExhausted if one more request could go over the budget."""
        if self.limit is not None and self.per_request:
            committed = self.used + self._reserved + self._maybe_spent
            if committed + self.per_request > self.limit:
                raise CreditsExhausted(f"the budget of {self.limit:g} credits for this run is spent", status=None)
        self._reserved += self.per_request

    def settle(self, *, spent: Decimal | None, maybe_charged: bool = False) -> None:
        """The request ended: ``spent`` is what its answer cost (None if it failed)."""
        self._reserved -= self.per_request
        if spent is not None:
            self.used += spent
        elif maybe_charged:
            self._maybe_spent += self.per_request
