"""Regularized (aging) evolution (Real et al., 2019) over the space's ``mutate`` capability.

The population is the last ``population_size`` complete trials in the order told (the oldest dies first, whatever
its fitness). Each child: draw ``sample_size`` members at random, mutate the one with the lowest loss. The first
``population_size`` archs are random (feasible when ``reject_infeasible``); failed and infeasible trials never
join the population, so they are never parents.
"""
from __future__ import annotations

from typing import Any

import pydantic

from .base import Key, Problem, Strategy
from .registry import register_strategy

MUTATION_TRIES = 50


class EvolutionOptions(pydantic.BaseModel, extra="forbid"):
    population_size: int = pydantic.Field(20, ge=2)
    sample_size: int = pydantic.Field(5, ge=1)
    mutations: int = pydantic.Field(1, ge=1)  # decisions changed per child
    reject_infeasible: bool = True  # children over max_cost are re-drawn

    @pydantic.model_validator(mode="after")
    def _sample_fits(self) -> EvolutionOptions:
        if self.sample_size > self.population_size:
            raise ValueError(f"sample_size ({self.sample_size}) must be <= population_size ({self.population_size})")
        return self


@register_strategy("evolution")
class RegularizedEvolution(Strategy):
    """Aging evolution: tournament of ``sample_size``, mutation only, FIFO population."""

    Options = EvolutionOptions

    def __init__(self, problem: Problem, *, seed: int, **options: Any) -> None:
        super().__init__(problem, seed=seed, **options)
        self.n_random = 0  # random archs asked as the initial population

    @property
    def min_trials(self) -> int:
        return self.options.population_size

    def population(self) -> list[tuple[Key, float]]:
        """The live population: the last ``population_size`` complete trials, oldest first."""
        return [(o.key, o.loss) for o in self.complete()[-self.options.population_size:]]

    def _propose(self, n: int) -> list[Key]:
        feasible_only = self.options.reject_infeasible
        n_random = max(0, min(n, self.options.population_size - self.n_random))
        population = self.population()
        if not population:
            n_random = n
        keys = self.sample_new(n_random, feasible_only=feasible_only)
        self.n_random += len(keys)
        return self.fill_with_children(keys, n, lambda taken: self._child(population, taken),
                                       feasible_only=feasible_only)

    def _child(self, population: list[tuple[Key, float]], taken: set[Key]) -> Key | None:
        for attempt in range(MUTATION_TRIES):
            picks = self.rng.choice(len(population), size=min(self.options.sample_size, len(population)), replace=False)
            parent = min((population[i] for i in picks), key=lambda member: member[1])[0]
            changes = self.options.mutations + attempt // 10
            child = self.key(self.space.mutate(self.space.decode(parent), self.rng, n_changes=changes))
            feasible = not self.options.reject_infeasible or self.feasible(child)
            if self.is_new(child) and child not in taken and feasible:
                return child
        return None

    def _extra_state(self) -> dict[str, Any]:
        return {"n_random": self.n_random}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.n_random = int(state["n_random"])
