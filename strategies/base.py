"""The ask/tell interface every search strategy implements, and the bookkeeping they share.

The search runner drives a strategy like this (the strategy never evaluates anything itself)::

    strategy = make_strategy("bo", problem, seed=0, eps=[0.05, 0.1])
    while budget_left:
        archs = strategy.ask(n)                  # n distinct archs never asked (or told) before
        trials = evaluate(archs)                 # cheap evaluators -> feasibility -> expensive ones
        strategy.tell(trials)                    # complete, failed and infeasible trials alike
        checkpoint(strategy.state_dict())        # JSON; ``load_state_dict`` resumes exactly

Contract:

- ``ask(n)`` returns at most ``n`` distinct archs of ``problem.space`` that were neither asked nor told before,
  across the whole run (a resumed one too). It returns fewer than ``n`` only when the space is exhausted
  (for strategies that never propose archs over ``problem.max_cost``: when its feasible part is exhausted).
- ``tell(trials)`` accepts any trials: complete ones (``metrics[problem.loss_key]`` is the loss), failed and
  infeasible ones (they never guide the search), and trials the strategy did not ask (a warm start). Archs told
  are never asked afterwards.
- ``state_dict()`` is JSON-serialisable (archs as candidate-index lists, the numpy Generator via
  ``bit_generator.state``); ``load_state_dict`` on a fresh instance built with the same problem, seed and
  options continues exactly as the original would.
- ``min_trials`` is the size of the initial design; a budget below it makes no sense for that strategy.
- Every strategy owns a ``numpy.random.Generator`` seeded from ``seed``; nothing touches global random state.

A strategy subclass defines ``Options`` (a pydantic model, ``extra="forbid"``), ``_propose(n)`` and, when it
keeps state beyond the shared history, ``_extra_state`` / ``_load_extra_state``.
"""
from __future__ import annotations

import abc
import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pydantic

from search_spaces import SearchSpace
from tocsr_nas.arch import Arch
from tocsr_nas.config_io import validate
from tocsr_nas.errors import ConfigError

logger = logging.getLogger(__name__)

Key = tuple[int, ...]
"""An arch as its candidate indices (hashable; how strategies store archs)."""

ENUMERATE_LIMIT = 50_000
"""Spaces up to this size are enumerated when random sampling runs out of new archs."""
COST_CACHE_LIMIT = 200_000
"""The cost cache is cleared when it reaches this many archs."""


@dataclasses.dataclass(frozen=True)
class Trial:
    """One evaluated arch: ``metrics`` holds at least the loss for complete trials."""

    arch: Arch
    metrics: Mapping[str, float]
    state: Literal["complete", "failed", "infeasible"]


@dataclasses.dataclass(frozen=True)
class Problem:
    """What is searched: minimise ``loss_key`` and the exact ``cost`` (GMACs, or another cheap metric) subject to
    ``cost <= max_cost``; ``eps`` are the search's loss bounds (the first is the default pick), for strategies that
    use them (``bo`` takes them as its default ``eps``). ``candidate_errors`` is what distillation measured, when
    the search has a surrogates folder: per decision, per candidate, the held-out relative error of the
    candidate's surrogates summed over the decision's units (``tocsr_nas.distill.store.decision_errors``); a
    strategy may use it as prior knowledge (``bo-prior`` does)."""

    space: SearchSpace
    cost: Callable[[Arch], float]
    max_cost: float | None = None
    loss_key: str = "loss"
    eps: tuple[float, ...] = ()
    candidate_errors: tuple[tuple[float, ...], ...] | None = None


@dataclasses.dataclass(frozen=True)
class Observation:
    """A told trial as a strategy keeps it: ``loss`` is None unless the trial is complete with a finite loss."""

    key: Key
    loss: float | None
    state: str


class NoOptions(pydantic.BaseModel, extra="forbid"):
    """Options of a strategy that takes none."""


class Strategy(abc.ABC):
    """Base class: validated options, an own RNG, the set of archs seen, the told history and its persistence."""

    name: ClassVar[str]
    Options: ClassVar[type[pydantic.BaseModel]] = NoOptions

    def __init__(self, problem: Problem, *, seed: int, **options: Any) -> None:
        self.problem = problem
        self.space = problem.space
        self.seed = int(seed)
        self.options = validate(self.Options, options, source=f"strategy '{self.name}' options")
        self.rng = np.random.default_rng(self.seed)
        self.cardinalities = np.array(self.space.cardinalities, dtype=np.int64)
        self.history: list[Observation] = []
        self._seen: set[Key] = set()
        self._costs: dict[Key, float] = {}

    # -- the interface ------------------------------------------------------------------------------------------
    @property
    def min_trials(self) -> int:
        """The size of the initial design."""
        return 1

    def ask(self, n: int) -> list[Arch]:
        """Up to ``n`` new distinct archs (fewer only when the space is exhausted)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        keys = self._propose(n) if n else []
        if len(keys) > n or len(set(keys)) != len(keys) or any(k in self._seen for k in keys):
            raise RuntimeError(f"strategy '{self.name}' proposed repeated archs")  # a bug, not bad input
        self._seen.update(keys)
        return [self.space.decode(k) for k in keys]

    def tell(self, trials: Sequence[Trial]) -> None:
        """Record evaluated trials (any state; asked or not)."""
        new = []
        for trial in trials:
            key = self.key(trial.arch)
            loss = trial.metrics.get(self.problem.loss_key) if trial.state == "complete" else None
            loss = float(loss) if loss is not None and math.isfinite(float(loss)) else None
            state = trial.state if trial.state != "complete" or loss is not None else "failed"
            self._seen.add(key)
            new.append(Observation(key, loss, state))
        self.history.extend(new)
        self._observe(new)

    def state_dict(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot of everything :meth:`ask` depends on."""
        return {
            "strategy": self.name,
            "seed": self.seed,
            "options": self.options.model_dump(mode="json"),
            "rng": self.rng.bit_generator.state,
            "seen": [list(k) for k in sorted(self._seen)],
            "history": [[list(o.key), o.loss, o.state] for o in self.history],
            **self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot taken by :meth:`state_dict` of the same strategy."""
        if state.get("strategy") != self.name:
            raise ConfigError(f"state of strategy '{state.get('strategy')}' cannot be loaded into '{self.name}'",
                              key="strategy", allowed=[self.name])
        self.rng.bit_generator.state = state["rng"]
        self._seen = {tuple(int(i) for i in k) for k in state["seen"]}
        self.history = [Observation(tuple(int(i) for i in k), loss, s) for k, loss, s in state["history"]]
        self._load_extra_state(state)

    # -- hooks for subclasses -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def _propose(self, n: int) -> list[Key]:
        """Up to ``n`` distinct keys not in ``self._seen``."""

    def _observe(self, observations: list[Observation]) -> None:  # noqa: B027
        """React to newly told trials (they are already in ``self.history``)."""

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Restore what :meth:`_extra_state` saved."""

    # -- helpers ------------------------------------------------------------------------------------------------
    def key(self, arch: Arch) -> Key:
        return tuple(int(i) for i in self.space.encode(arch))

    def cost(self, key: Key) -> float:
        """The exact cost of an arch (cached)."""
        if key not in self._costs:
            if len(self._costs) >= COST_CACHE_LIMIT:
                self._costs.clear()
            self._costs[key] = float(self.problem.cost(self.space.decode(key)))
        return self._costs[key]

    def feasible(self, key: Key) -> bool:
        """Whether the arch's exact cost is within ``max_cost``."""
        return self.problem.max_cost is None or self.cost(key) <= self.problem.max_cost

    def is_new(self, key: Key) -> bool:
        return key not in self._seen

    def complete(self) -> list[Observation]:
        """Told trials with a finite loss, in the order told."""
        return [o for o in self.history if o.loss is not None]

    def sample_new(self, n: int, *, feasible_only: bool, exclude: set[Key] | frozenset[Key] = frozenset()) -> list[Key]:
        """Up to ``n`` distinct uniformly random new archs (not seen, not in ``exclude``).

        Rejection sampling first; when it stalls and the space is small enough, the remaining archs are enumerated
        and drawn without replacement, so fewer than ``n`` means the (feasible part of the) space is exhausted.
        """
        if n <= 0:
            return []
        found: list[Key] = []
        taken = set(exclude)
        batch = max(4 * n, 64)
        for _ in range(20):
            rows = self.rng.integers(0, self.cardinalities, size=(batch, len(self.cardinalities)))
            for row in rows:
                key = tuple(int(i) for i in row)
                if key in taken or key in self._seen or (feasible_only and not self.feasible(key)):
                    continue
                taken.add(key)
                found.append(key)
                if len(found) == n:
                    return found
        if self.space.size > ENUMERATE_LIMIT:
            logger.warning("strategy '%s': found only %d of %d new archs by sampling", self.name, len(found), n)
            return found
        rest = [k for k in self._enumerate() if k not in taken and k not in self._seen
                and (not feasible_only or self.feasible(k))]
        picks = self.rng.permutation(len(rest))[: n - len(found)]
        return found + [rest[i] for i in picks]

    def fill_with_children(self, keys: list[Key], n: int, make_child: Callable[[set[Key]], Key | None], *,
                           feasible_only: bool) -> list[Key]:
        """Append ``make_child(taken)`` until ``n`` keys; a random new arch when it finds none (None)."""
        while len(keys) < n:
            child = make_child(set(keys))
            if child is None:  # variation keeps hitting seen archs: fall back to a random one
                extra = self.sample_new(1, feasible_only=feasible_only, exclude=set(keys))
                if not extra:
                    break
                child = extra[0]
            keys.append(child)
        return keys

    def _enumerate(self) -> list[Key]:
        flat = np.arange(self.space.size)
        columns = np.unravel_index(flat, tuple(int(c) for c in self.cardinalities))
        return [tuple(int(i) for i in row) for row in np.stack(columns, axis=1)]
