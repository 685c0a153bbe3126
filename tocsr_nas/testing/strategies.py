"""The conformance suite every strategy must pass (ask/tell, seeding, resume, failures, cost bounds).

A plug-in author runs it on their own class::

    from tocsr_nas.testing import check_strategy
    check_strategy(MyStrategy, options={"population_size": 6})

The problem is synthetic and known in full: the toy space (8000 archs) with an additive cost and a loss that rises
as the cost falls (log-additive, with noise in the per-candidate terms).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from search_spaces import SearchSpace
from strategies import Problem, Strategy, Trial, strategy_class
from tocsr_nas.arch import Arch
from tocsr_nas.errors import ConfigError

from .spaces import TINY_SPACE, toy_space

Loss = Callable[[Arch], float]


class Synthetic:
    """Cost and loss known for every arch of ``space``."""

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.space = space
        self.weights = [np.sort(rng.uniform(0.2, 1.0, n))[::-1] for n in space.cardinalities]  # index 0 dearest
        self.terms = [np.sort(rng.uniform(0.0, 1.0, n)) + rng.normal(0.0, 0.3, n) for n in space.cardinalities]

    def cost(self, arch: Arch) -> float:
        return float(sum(w[i] for w, i in zip(self.weights, self.space.encode(arch), strict=True)))

    def loss(self, arch: Arch) -> float:
        return float(np.exp(sum(t[i] for t, i in zip(self.terms, self.space.encode(arch), strict=True)) / 3))

    def candidate_errors(self) -> tuple[tuple[float, ...], ...]:
        """Per-candidate errors as distillation would report them: each candidate's loss term above its
        decision's smallest (so their sum rises with the log-loss, as a good prior does)."""
        return tuple(tuple(float(v) for v in t - t.min()) for t in self.terms)

    def problem(self) -> Problem:
        """The problem with ``max_cost`` at the median cost (half the space is feasible), with candidate errors."""
        costs = sorted(self.cost(a) for a in self.space.enumerate())
        return Problem(self.space, self.cost, max_cost=costs[len(costs) // 2], candidate_errors=self.candidate_errors())


def evaluate(problem: Problem, loss: Loss, archs: list[Arch], *, fail_every: int = 7) -> list[Trial]:
    """Trials as the runner would report them: every ``fail_every``-th fails, archs over max_cost are infeasible."""
    trials = []
    for arch in archs:
        cost = problem.cost(arch)
        if problem.max_cost is not None and cost > problem.max_cost:
            trials.append(Trial(arch, {"gmacs": cost}, "infeasible"))
        elif int(arch.arch_id, 16) % fail_every == 0:
            trials.append(Trial(arch, {}, "failed"))
        else:
            trials.append(Trial(arch, {"loss": loss(arch), "gmacs": cost}, "complete"))
    return trials


def run(strategy: Strategy, problem: Problem, loss: Loss, rounds: int, batch: int = 4) -> list[list[Arch]]:
    """``rounds`` of ask(batch)/tell; the archs asked per round."""
    asked = []
    for _ in range(rounds):
        archs = strategy.ask(batch)
        strategy.tell(evaluate(problem, loss, archs))
        asked.append(archs)
    return asked


def check_strategy(strategy: str | type[Strategy], *, options: dict[str, Any] | None = None,
                   synthetic: Synthetic | None = None, other: str = "random") -> None:
    """Run every conformance check on a strategy class (or registered name) built with ``options``.

    Args:
        strategy: the class, or its registered name.
        options: constructor options (small settings so it leaves its initial design within a few rounds).
        synthetic: the problem to run on (default: the toy space).
        other: another registered strategy (default options) whose state this one must refuse.

    Raises:
        AssertionError: naming the first broken property.
    """
    cls = strategy_class(strategy) if isinstance(strategy, str) else strategy
    options = dict(options or {})
    synthetic = synthetic or Synthetic(toy_space())
    problem = synthetic.problem()

    def build(problem: Problem, seed: int = 0, **overrides: Any) -> Strategy:
        return cls(problem, seed=seed, **{**options, **overrides})

    for check in (check_asks_distinct_archs, check_same_seed_same_asks, check_state_round_trip,
                  check_accepts_failed_and_unasked_trials, check_never_asks_over_max_cost, check_leaves_global_rng,
                  check_options):
        check(build, problem, synthetic.loss)
    check_exhausts_tiny_space(build)
    other_cls = strategy_class(other if strategy_class(other) is not cls else "evolution")
    check_refuses_other_state(build, problem, other_cls(problem, seed=0))


def check_asks_distinct_archs(build: Callable[..., Strategy], problem: Problem, loss: Loss) -> None:
    """40 asks: distinct, in the space, never repeated."""
    asked = [a for batch in run(build(problem), problem, loss, rounds=8, batch=5) for a in batch]
    assert len(asked) == 40, f"asked {len(asked)} archs instead of 40"
    assert len(set(asked)) == len(asked), "asked an arch twice"
    for arch in asked:
        problem.space.validate(arch)


def check_exhausts_tiny_space(build: Callable[..., Strategy]) -> None:
    """On a 4-arch space: 3, then the 1 left, then nothing."""
    tiny = Problem(toy_space(TINY_SPACE), lambda arch: 1.0)
    strategy = build(tiny)
    first = strategy.ask(3)
    strategy.tell([Trial(a, {"loss": 1.0 + i}, "complete") for i, a in enumerate(first)])
    second = strategy.ask(3)
    assert len(first) == 3 and len(second) == 1, f"asked {len(first)} then {len(second)} of 4 archs"
    assert set(first) | set(second) == set(tiny.space.enumerate())
    assert strategy.ask(3) == [], "asked again in an exhausted space"


def check_same_seed_same_asks(build: Callable[..., Strategy], problem: Problem, loss: Loss) -> None:
    a = run(build(problem, seed=1), problem, loss, rounds=4)
    b = run(build(problem, seed=1), problem, loss, rounds=4)
    c = run(build(problem, seed=2), problem, loss, rounds=4)
    assert a == b, "the same seed asked different archs"
    assert a != c, "another seed asked the same archs"


def check_state_round_trip(build: Callable[..., Strategy], problem: Problem, loss: Loss) -> None:
    """A JSON round trip of ``state_dict`` continues exactly as the original."""
    original = build(problem, seed=3)
    run(original, problem, loss, rounds=3)
    state = json.loads(json.dumps(original.state_dict()))
    resumed = build(problem, seed=3)
    resumed.load_state_dict(state)
    assert run(resumed, problem, loss, rounds=3) == run(original, problem, loss, rounds=3), "resume diverged"


def check_refuses_other_state(build: Callable[..., Strategy], problem: Problem, other: Strategy) -> None:
    """Loading the state of ``other`` (another strategy's instance) is a ConfigError."""
    mine = build(problem)
    assert type(mine) is not type(other), "needs a strategy of another class"
    try:
        mine.load_state_dict(other.state_dict())
    except ConfigError:
        return
    raise AssertionError(f"loaded the state of '{type(other).__name__}'")


def check_accepts_failed_and_unasked_trials(build: Callable[..., Strategy], problem: Problem, loss: Loss) -> None:
    rng = np.random.default_rng(99)
    warm = list(dict.fromkeys(problem.space.sample(rng) for _ in range(12)))
    strategy = build(problem)
    strategy.tell([Trial(a, {}, "failed") for a in warm[:4]])
    strategy.tell([Trial(a, {"gmacs": 9.9}, "infeasible") for a in warm[4:8]])
    strategy.tell([Trial(a, {"loss": float("nan")}, "complete") for a in warm[8:9]])
    assert len(strategy.ask(3)) == 3, "nothing but failures so far: must still ask"
    strategy.tell([Trial(a, {"loss": loss(a)}, "complete") for a in warm[9:]])
    asked = [a for batch in run(strategy, problem, loss, rounds=5) for a in batch]
    assert not set(asked) & set(warm), "asked an arch it was told about"


def check_never_asks_over_max_cost(build: Callable[..., Strategy], problem: Problem, loss: Loss) -> None:
    asked = [a for batch in run(build(problem), problem, loss, rounds=6, batch=4) for a in batch]
    assert max(problem.cost(a) for a in asked) <= problem.max_cost, "asked an arch over max_cost"


def check_leaves_global_rng(build: Callable[..., Strategy], problem: Problem, loss: Loss) -> None:
    np_state, torch_state = np.random.get_state()[1].copy(), torch.random.get_rng_state().clone()
    run(build(problem), problem, loss, rounds=3)
    assert np.array_equal(np.random.get_state()[1], np_state), "changed numpy's global random state"
    assert torch.equal(torch.random.get_rng_state(), torch_state), "changed torch's global random state"


def check_options(build: Callable[..., Strategy], problem: Problem, loss: Loss) -> None:
    """``min_trials >= 1``; an unknown option is a ConfigError."""
    assert build(problem).min_trials >= 1
    try:
        build(problem, no_such_option=1)
    except ConfigError as err:
        assert "unknown key" in str(err), str(err)
        return
    raise AssertionError("accepted an unknown option")
