"""Random search: archs drawn uniformly from the space (optionally only those within ``max_cost``)."""
from __future__ import annotations

import pydantic

from .base import Key, Strategy
from .registry import register_strategy


class RandomOptions(pydantic.BaseModel, extra="forbid"):
    reject_infeasible: bool = True  # re-sample archs whose exact cost exceeds the problem's max_cost


@register_strategy("random")
class RandomSearch(Strategy):
    """Uniform sampling without repeats; told results are ignored."""

    Options = RandomOptions

    def _propose(self, n: int) -> list[Key]:
        return self.sample_new(n, feasible_only=self.options.reject_infeasible)
