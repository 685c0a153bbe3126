"""NSGA-II on (loss, cost), steady-state, with pymoo's non-dominated sorting and crowding distance.

pymoo's own ask/tell loop does not fit this interface: its algorithm state is only picklable (not JSON), it
asks and tells whole generations with every objective filled in, and it removes duplicates only within a
generation. So the generation loop is written here (steady-state: every complete trial joins the population, which
is cut back to ``population_size`` by pymoo's rank + crowding order), and pymoo supplies the Pareto machinery.
Variation uses the space's categorical operators: uniform ``crossover`` of two parents picked by binary tournament
(rank, then crowding distance) and ``mutate``. Children over ``max_cost`` or already seen are re-drawn.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pydantic
from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from .base import Key, Observation, Problem, Strategy
from .registry import register_strategy

CHILD_TRIES = 50


class NSGA2Options(pydantic.BaseModel, extra="forbid"):
    population_size: int = pydantic.Field(20, ge=4)
    crossover_prob: float = pydantic.Field(0.9, ge=0.0, le=1.0)
    mutations: int = pydantic.Field(1, ge=1)  # decisions changed per child


def rank_and_crowding(objectives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-domination rank (0 = first front) and crowding distance (within its front) of each row ``(N, M)``."""
    rank = np.zeros(len(objectives), dtype=np.int64)
    crowding = np.zeros(len(objectives))
    for r, front in enumerate(NonDominatedSorting().do(objectives)):
        rank[front] = r
        crowding[front] = calc_crowding_distance(objectives[front])
    return rank, crowding


@register_strategy("nsga2")
class NSGA2(Strategy):
    """Multi-objective evolution on (loss, exact cost); archs over ``max_cost`` are never asked."""

    Options = NSGA2Options

    def __init__(self, problem: Problem, *, seed: int, **options: Any) -> None:
        super().__init__(problem, seed=seed, **options)
        self.n_random = 0
        self.members: list[tuple[Key, float, float]] = []  # (key, loss, cost) of the survivors

    @property
    def min_trials(self) -> int:
        return self.options.population_size

    def _observe(self, observations: list[Observation]) -> None:
        self.members += [(o.key, o.loss, self.cost(o.key)) for o in observations
                         if o.loss is not None and o.state == "complete" and self.feasible(o.key)]
        if len(self.members) > self.options.population_size:
            rank, crowding = rank_and_crowding(self._objectives())
            order = np.lexsort((-crowding, rank))  # rank first, then the larger crowding distance
            self.members = [self.members[i] for i in sorted(order[: self.options.population_size])]

    def _objectives(self) -> np.ndarray:
        return np.array([[loss, cost] for _, loss, cost in self.members], dtype=np.float64)

    def _propose(self, n: int) -> list[Key]:
        n_random = max(0, min(n, self.options.population_size - self.n_random))
        if len(self.members) < 2:
            n_random = n
        keys = self.sample_new(n_random, feasible_only=True)
        self.n_random += len(keys)
        if len(keys) >= n:
            return keys
        rank, crowding = rank_and_crowding(self._objectives())
        return self.fill_with_children(keys, n, lambda taken: self._child(rank, crowding, taken), feasible_only=True)

    def _tournament(self, rank: np.ndarray, crowding: np.ndarray) -> Key:
        a, b = self.rng.choice(len(self.members), size=2, replace=False)
        if rank[a] != rank[b]:
            winner = a if rank[a] < rank[b] else b
        elif crowding[a] != crowding[b]:
            winner = a if crowding[a] > crowding[b] else b
        else:
            winner = a if self.rng.random() < 0.5 else b
        return self.members[winner][0]

    def _child(self, rank: np.ndarray, crowding: np.ndarray, taken: set[Key]) -> Key | None:
        for attempt in range(CHILD_TRIES):
            parent = self.space.decode(self._tournament(rank, crowding))
            if self.rng.random() < self.options.crossover_prob:
                parent = self.space.crossover(parent, self.space.decode(self._tournament(rank, crowding)), self.rng)
            changes = self.options.mutations + attempt // 10
            child = self.key(self.space.mutate(parent, self.rng, n_changes=changes))
            if self.is_new(child) and child not in taken and self.feasible(child):
                return child
        return None

    def _extra_state(self) -> dict[str, Any]:
        return {"n_random": self.n_random, "members": [[list(k), loss, cost] for k, loss, cost in self.members]}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.n_random = int(state["n_random"])
        self.members = [(tuple(int(i) for i in k), float(loss), float(cost)) for k, loss, cost in state["members"]]
