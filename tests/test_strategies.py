"""Every registered strategy passes the conformance suite (:mod:`tocsr_nas.testing.strategies`), plus the
built-ins' specifics and a quality check of ε-constrained BO against random."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from strategies import STRATEGIES, Problem, Strategy, Trial, available_strategies, make_strategy, register_strategy
from tocsr_nas.errors import ConfigError
from tocsr_nas.testing import Synthetic, check_strategy, toy_space
from tocsr_nas.testing import strategies as suite

# small settings so every strategy leaves its initial design within a few rounds
OPTIONS = {
    "bo": {"eps": [1.6, 2.2], "initial": 6, "pool": 300},
    "bo-prior": {"eps": [1.6, 2.2], "initial": 6, "pool": 300},
    "evolution": {"population_size": 6, "sample_size": 3},
    "nsga2": {"population_size": 6},
}
NAMES = available_strategies()
SLOW = {"optuna-gp"}  # Optuna's GPSampler takes seconds per ask on this machine
PARAMS = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NAMES]
CHECKS = [suite.check_asks_distinct_archs, suite.check_same_seed_same_asks, suite.check_state_round_trip,
          suite.check_accepts_failed_and_unasked_trials, suite.check_never_asks_over_max_cost,
          suite.check_leaves_global_rng, suite.check_options]


@pytest.fixture(scope="module")
def synthetic() -> Synthetic:
    return Synthetic(toy_space())


@pytest.fixture(scope="module")
def problem(synthetic: Synthetic) -> Problem:
    return synthetic.problem()


def builder(name: str):
    def build(problem: Problem, seed: int = 0, **overrides) -> Strategy:
        return make_strategy(name, problem, seed=seed, **{**OPTIONS.get(name, {}), **overrides})

    return build


def build(name: str, problem: Problem, seed: int = 0, **overrides) -> Strategy:
    return builder(name)(problem, seed, **overrides)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", PARAMS)
def test_conformance(name: str, check, problem: Problem, synthetic: Synthetic) -> None:
    check(builder(name), problem, synthetic.loss)


@pytest.mark.parametrize("name", PARAMS)
def test_exhausting_a_tiny_space_returns_fewer(name: str) -> None:
    suite.check_exhausts_tiny_space(builder(name))


@pytest.mark.parametrize("name", PARAMS)
def test_loading_another_strategys_state_is_refused(name: str, problem: Problem) -> None:
    suite.check_refuses_other_state(builder(name), problem, build(next(n for n in NAMES if n != name), problem))


def test_check_strategy_runs_the_whole_suite_and_catches_a_broken_strategy() -> None:
    check_strategy("evolution", options=OPTIONS["evolution"])
    random_cls = STRATEGIES.get("random")

    class Repeats(random_cls):  # asks its first archs again every round
        def ask(self, n):
            if not hasattr(self, "_first"):
                self._first = super().ask(n)
            return self._first[:n]

    with pytest.raises(AssertionError, match="asked an arch twice"):
        check_strategy(Repeats)


def test_random_may_ask_infeasible_archs_when_told_to(problem: Problem) -> None:
    asked = build("random", problem, reject_infeasible=False).ask(40)
    assert max(problem.cost(a) for a in asked) > problem.max_cost


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
    with STRATEGIES.scoped():
        STRATEGIES.mark_unavailable("needs-extra", "needs the package 'nothing' (pip install 'tocsr-nas[nothing]')")
        with pytest.raises(ConfigError, match=r"unavailable: needs the package 'nothing' \(pip install 'tocsr-nas"):
            make_strategy("needs-extra", problem, seed=0)
        assert "needs-extra" not in available_strategies()
    assert "needs-extra" not in STRATEGIES.unavailable()


def test_duplicate_strategy_name_names_both_sources() -> None:
    with STRATEGIES.scoped():

        class Again(STRATEGIES.get("random")):
            pass

        with pytest.raises(ConfigError, match=r"strategy 'random' is already registered by strategies\.random_search.*"
                                              r"registered again by .*Again"):
            register_strategy("random")(Again)


@pytest.mark.skipif("optuna-tpe" not in NAMES, reason="needs the extra 'optuna'")
def test_optuna_tells_a_trial_under_the_eps_constraint(synthetic: Synthetic) -> None:
    """Optuna calls the constraints function from ``tell`` before the trial holds its values."""
    problem = dataclasses.replace(synthetic.problem(), eps=(2.0,))
    strategy = make_strategy("optuna-tpe", problem, seed=0, n_startup_trials=3)
    asked = [a for batch in suite.run(strategy, problem, synthetic.loss, rounds=3, batch=2) for a in batch]
    assert len(set(asked)) == 6
