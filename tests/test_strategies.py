"""Conformance suite every registered strategy must pass, plus a quality check of ε-constrained BO against random.

The problem is synthetic and known in full: the micro space (8000 archs) with an additive cost table and a loss
that rises as the cost falls (log-additive, with noise in the per-candidate terms).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import search_spaces
from search_spaces import SearchSpace
from strategies import Problem, Strategy, Trial, available_strategies, make_strategy, mark_unavailable
from tocsr_nas.arch import Arch
from tocsr_nas.errors import ConfigError

from .conftest import write_space

TINY_SPACE = """
name: tiny
teacher: {teacher}
candidates:
  resnet: [teacher, identity]
  transformer: [teacher, identity]
stages:
  - {name: mid, units: ["mid_block.*"]}
"""

# small settings so every strategy leaves its initial design within a few rounds
OPTIONS = {
    "bo": {"eps": [1.6, 2.2], "initial": 6, "pool": 300},
    "evolution": {"population_size": 6, "sample_size": 3},
    "nsga2": {"population_size": 6},
}
STRATEGIES = available_strategies()
SLOW = {"optuna-gp"}  # Optuna's GPSampler takes seconds per ask on this machine
PARAMS = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in STRATEGIES]


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


@pytest.fixture(scope="module")
def synthetic(micro_space: SearchSpace) -> Synthetic:
    return Synthetic(micro_space)


@pytest.fixture(scope="module")
def problem(synthetic: Synthetic) -> Problem:
    costs = sorted(synthetic.cost(a) for a in synthetic.space.enumerate())
    return Problem(synthetic.space, synthetic.cost, max_cost=costs[len(costs) // 2])


@pytest.fixture(scope="module")
def tiny_space(tmp_path_factory: pytest.TempPathFactory) -> SearchSpace:
    return search_spaces.load(write_space(tmp_path_factory.mktemp("tiny"), TINY_SPACE))


def build(name: str, problem: Problem, seed: int = 0, **overrides) -> Strategy:
    return make_strategy(name, problem, seed=seed, **{**OPTIONS.get(name, {}), **overrides})


def evaluate(problem: Problem, loss, archs: list[Arch], *, fail_every: int = 7) -> list[Trial]:
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


def run(strategy: Strategy, problem: Problem, loss, rounds: int, batch: int = 4) -> list[list[Arch]]:
    asked = []
    for _ in range(rounds):
        archs = strategy.ask(batch)
        strategy.tell(evaluate(problem, loss, archs))
        asked.append(archs)
    return asked


@pytest.mark.parametrize("name", PARAMS)
def test_asks_distinct_archs_of_the_space_and_never_repeats(name: str, problem: Problem, synthetic: Synthetic) -> None:
    strategy = build(name, problem)
    asked = [a for batch in run(strategy, problem, synthetic.loss, rounds=8, batch=5) for a in batch]
    assert len(asked) == 40
    assert len(set(asked)) == len(asked)
    for arch in asked:
        problem.space.validate(arch)


@pytest.mark.parametrize("name", PARAMS)
def test_exhausting_a_tiny_space_returns_fewer(name: str, tiny_space: SearchSpace) -> None:
    tiny = Problem(tiny_space, lambda arch: 1.0)
    strategy = build(name, tiny)
    first = strategy.ask(3)
    strategy.tell([Trial(a, {"loss": 1.0 + i}, "complete") for i, a in enumerate(first)])
    second = strategy.ask(3)
    assert len(first) == 3 and len(second) == 1
    assert set(first) | set(second) == set(tiny_space.enumerate())
    assert strategy.ask(3) == []


@pytest.mark.parametrize("name", PARAMS)
def test_same_seed_same_asks_other_seed_other_asks(name: str, problem: Problem, synthetic: Synthetic) -> None:
    a = run(build(name, problem, seed=1), problem, synthetic.loss, rounds=4)
    b = run(build(name, problem, seed=1), problem, synthetic.loss, rounds=4)
    c = run(build(name, problem, seed=2), problem, synthetic.loss, rounds=4)
    assert a == b
    assert a != c


@pytest.mark.parametrize("name", PARAMS)
def test_state_dict_json_round_trip_continues_exactly(name: str, problem: Problem, synthetic: Synthetic) -> None:
    original = build(name, problem, seed=3)
    run(original, problem, synthetic.loss, rounds=3)
    state = json.loads(json.dumps(original.state_dict()))
    resumed = build(name, problem, seed=3)
    resumed.load_state_dict(state)
    assert run(resumed, problem, synthetic.loss, rounds=3) == run(original, problem, synthetic.loss, rounds=3)


@pytest.mark.parametrize("name", PARAMS)
def test_loading_another_strategys_state_is_refused(name: str, problem: Problem) -> None:
    state = build(name, problem).state_dict()
    other = next(n for n in STRATEGIES if n != name)
    with pytest.raises(ConfigError, match=name):
        build(other, problem).load_state_dict(state)


@pytest.mark.parametrize("name", PARAMS)
def test_accepts_failed_infeasible_and_unasked_trials(name: str, problem: Problem, synthetic: Synthetic) -> None:
    rng = np.random.default_rng(99)
    warm = list(dict.fromkeys(problem.space.sample(rng) for _ in range(12)))
    strategy = build(name, problem)
    strategy.tell([Trial(a, {}, "failed") for a in warm[:4]])
    strategy.tell([Trial(a, {"gmacs": 9.9}, "infeasible") for a in warm[4:8]])
    strategy.tell([Trial(a, {"loss": float("nan")}, "complete") for a in warm[8:9]])
    assert len(strategy.ask(3)) == 3  # nothing but failures so far: still asks
    strategy.tell([Trial(a, {"loss": synthetic.loss(a)}, "complete") for a in warm[9:]])
    asked = [a for batch in run(strategy, problem, synthetic.loss, rounds=5) for a in batch]
    assert not set(asked) & set(warm)


@pytest.mark.parametrize("name", PARAMS)
def test_never_asks_archs_over_max_cost(name: str, problem: Problem, synthetic: Synthetic) -> None:
    strategy = build(name, problem)
    asked = [a for batch in run(strategy, problem, synthetic.loss, rounds=6, batch=4) for a in batch]
    assert max(problem.cost(a) for a in asked) <= problem.max_cost


def test_random_may_ask_infeasible_archs_when_told_to(problem: Problem) -> None:
    asked = build("random", problem, reject_infeasible=False).ask(40)
    assert max(problem.cost(a) for a in asked) > problem.max_cost


@pytest.mark.parametrize("name", PARAMS)
def test_leaves_global_random_state_alone(name: str, problem: Problem, synthetic: Synthetic) -> None:
    np_state, torch_state = np.random.get_state()[1].copy(), torch.random.get_rng_state().clone()
    run(build(name, problem), problem, synthetic.loss, rounds=3)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)


@pytest.mark.parametrize("name", PARAMS)
def test_min_trials_and_bad_options(name: str, problem: Problem) -> None:
    assert build(name, problem).min_trials >= 1
    with pytest.raises(ConfigError, match="unknown key"):
        build(name, problem, no_such_option=1)


def test_unknown_strategy_lists_the_registered_ones(problem: Problem) -> None:
    with pytest.raises(ConfigError, match="allowed: .*random"):
        make_strategy("simulated-annealing", problem, seed=0)


def test_bo_needs_eps_and_checks_values(problem: Problem) -> None:
    with pytest.raises(ConfigError, match="eps"):
        make_strategy("bo", problem, seed=0)
    with pytest.raises(ConfigError, match="eps"):
        make_strategy("bo", problem, seed=0, eps=[])
    with pytest.raises(ConfigError, match="sample_size"):
        make_strategy("evolution", problem, seed=0, population_size=4, sample_size=5)


def test_bo_finds_cheaper_feasible_archs_than_random(synthetic: Synthetic) -> None:
    archs = list(synthetic.space.enumerate())
    losses = np.array([synthetic.loss(a) for a in archs])
    eps = float(np.quantile(losses, 0.1))  # 10% of the space meets the loss bound
    problem = Problem(synthetic.space, synthetic.cost)

    def best_cost(name: str, seed: int, **options) -> float:
        strategy = make_strategy(name, problem, seed=seed, **options)
        best = np.inf
        for batch in [10, 5, 5, 5, 5]:
            asked = strategy.ask(batch)
            strategy.tell([Trial(a, {"loss": synthetic.loss(a)}, "complete") for a in asked])
            best = min([best] + [problem.cost(a) for a in asked if synthetic.loss(a) <= eps])
        return best

    bo = np.mean([best_cost("bo", seed, eps=eps, initial=10, pool=500) for seed in range(3)])
    random = np.mean([best_cost("random", seed) for seed in range(3)])
    assert bo < random


def test_unavailable_strategy_says_why(problem: Problem) -> None:
    mark_unavailable("needs-extra", "needs the package 'nothing' (pip install nothing)")
    with pytest.raises(ConfigError, match="unavailable: needs the package 'nothing'"):
        make_strategy("needs-extra", problem, seed=0)
    assert "needs-extra" not in available_strategies()
