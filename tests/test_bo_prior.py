"""``bo-prior`` (distillation errors as the GP's prior), the path that brings those errors to a strategy, and the
eps cycle dropping eps values that no longer constrain (``bo`` and ``bo-prior``)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

import search_spaces
from strategies import Problem, Trial, make_strategy
from strategies.base import Observation
from tocsr_nas.distill.store import CandidateRecord, SurrogateStore, candidate_key, decision_errors
from tocsr_nas.errors import ConfigError
from tocsr_nas.search import SearchConfig
from tocsr_nas.search.runner import search_strategy
from tocsr_nas.testing import Synthetic, check_strategy, toy_space
from tocsr_nas.testing.strategies import evaluate

OPTIONS = {"eps": [1.6, 2.2], "initial": 8, "pool": 300}


@pytest.fixture(scope="module")
def synthetic() -> Synthetic:
    return Synthetic(toy_space())


def initial_design(name: str, problem: Problem, synthetic: Synthetic):  # noqa: ANN201
    strategy = make_strategy(name, problem, seed=0, **OPTIONS)
    archs = strategy.ask(OPTIONS["initial"])
    strategy.tell(evaluate(problem, synthetic.loss, archs, fail_every=10**9))
    return strategy


def test_prior_reaches_the_gp(synthetic: Synthetic) -> None:
    """Same seed, same initial design: with the prior the GP ranks unseen archs far better, so the first model-based
    ask differs."""
    problem = dataclasses.replace(synthetic.problem(), max_cost=None)
    plain, prior = initial_design("bo", problem, synthetic), initial_design("bo-prior", problem, synthetic)
    assert plain.history == prior.history
    rng = np.random.default_rng(5)
    pool = list(dict.fromkeys(tuple(int(i) for i in problem.space.encode(problem.space.sample(rng)))
                              for _ in range(300)))
    truth = np.log([synthetic.loss(problem.space.decode(k)) for k in pool])
    rho = {}
    for strategy in (plain, prior):
        mean, _ = strategy._posterior(strategy.complete(), pool)
        rho[strategy.name] = spearmanr(mean, truth).statistic
    assert rho["bo-prior"] > 0.8 > rho["bo"] + 0.2, rho
    assert plain.ask(1) != prior.ask(1)


def test_without_candidate_errors_it_is_bo(synthetic: Synthetic) -> None:
    problem = dataclasses.replace(synthetic.problem(), candidate_errors=None)
    plain, prior = initial_design("bo", problem, synthetic), initial_design("bo-prior", problem, synthetic)
    assert prior.prior is None
    assert prior.ask(2) == plain.ask(2)


def test_candidate_errors_of_another_shape_are_refused(synthetic: Synthetic) -> None:
    problem = dataclasses.replace(synthetic.problem(), candidate_errors=((0.0, 1.0),))
    with pytest.raises(ValueError, match="do not fit"):
        make_strategy("bo-prior", problem, seed=0, **OPTIONS)


def test_void_eps_leave_the_cycle(synthetic: Synthetic) -> None:
    """An eps met by an arch as cheap as any left stops being targeted; with none left, the front's losses are."""
    problem = dataclasses.replace(synthetic.problem(), max_cost=None)
    strategy = make_strategy("bo", problem, seed=0, eps=[0.5, 3.0, 9.0], initial=2, pool=300)
    archs = sorted(problem.space.enumerate(), key=problem.cost)
    cheapest, dear = archs[0], archs[-1]
    strategy.tell([Trial(cheapest, {"loss": 2.0}, "complete"), Trial(dear, {"loss": 0.4}, "complete")])
    complete = strategy.complete()
    cheapest_left = problem.cost(archs[1])
    assert strategy._active_eps(complete, cheapest_left) == [0.5]  # 3.0 and 9.0: the cheapest arch meets them
    assert strategy._active_eps(complete, problem.cost(dear)) == [0.5, 3.0, 9.0]  # nothing that cheap is left
    satisfied = make_strategy("bo", problem, seed=0, eps=[3.0, 9.0], initial=2, pool=300)
    satisfied.tell([Trial(cheapest, {"loss": 2.0}, "complete"), Trial(dear, {"loss": 0.4}, "complete"),
                    Trial(archs[len(archs) // 2], {"loss": 1.0}, "complete")])
    assert satisfied._active_eps(satisfied.complete(), cheapest_left) == [0.4, 1.0]  # the front's losses, not void
    off = make_strategy("bo", problem, seed=0, eps=[3.0, 9.0], initial=2, pool=300, skip_void_eps=False)
    assert off._active_eps([Observation(strategy.key(cheapest), 2.0, "complete")], cheapest_left) == [3.0, 9.0]


def test_eps_cycle_can_run_loosest_first(synthetic: Synthetic) -> None:
    """``eps_order: loosest-first`` sorts and deduplicates the eps (and the front's losses) loosest first; the default
    keeps the order given, the pick's eps first."""
    problem = dataclasses.replace(synthetic.problem(), max_cost=None)
    archs = sorted(problem.space.enumerate(), key=problem.cost)
    given = make_strategy("bo", problem, seed=0, eps=[3.0, 0.5, 9.0], initial=2, pool=300)
    loose = make_strategy("bo", problem, seed=0, eps=[3.0, 0.5, 9.0, 3.0], initial=2, pool=300,
                          eps_order="loosest-first")
    nothing_cheap_left = problem.cost(archs[-1])
    assert given._active_eps([], nothing_cheap_left) == [3.0, 0.5, 9.0]
    assert loose._active_eps([], nothing_cheap_left) == [9.0, 3.0, 0.5]
    satisfied = make_strategy("bo", problem, seed=0, eps=[3.0, 9.0], initial=2, pool=300, eps_order="loosest-first")
    satisfied.tell([Trial(archs[0], {"loss": 2.0}, "complete"), Trial(archs[len(archs) // 2], {"loss": 1.0}, "complete"),
                    Trial(archs[-1], {"loss": 0.4}, "complete")])
    assert satisfied._active_eps(satisfied.complete(), problem.cost(archs[1])) == [1.0, 0.4]  # the front, loosest first
    with pytest.raises(ConfigError, match="eps_order"):
        make_strategy("bo", problem, seed=0, eps=[1.0], eps_order="tightest")


def test_eps_fill_adds_levels_even_in_log_loss(synthetic: Synthetic) -> None:
    """``eps_fill: 1`` puts the geometric mean between neighbouring eps; ``given`` keeps the named ones first."""
    problem = dataclasses.replace(synthetic.problem(), max_cost=None)
    nothing_cheap_left = max(problem.cost(a) for a in problem.space.enumerate())
    loose = make_strategy("bo", problem, seed=0, eps=[0.1, 0.4, 1.6], eps_fill=1, eps_order="loosest-first")
    assert np.allclose(loose._active_eps([], nothing_cheap_left), [1.6, 0.8, 0.4, 0.2, 0.1])
    given = make_strategy("bo", problem, seed=0, eps=[0.4, 0.1, 1.6], eps_fill=2)
    assert np.allclose(given._active_eps([], nothing_cheap_left), [0.4, 0.1, 1.6, 1.6 / 4 ** (1 / 3), 1.6 / 4 ** (2 / 3),
                                                                    0.4 / 4 ** (1 / 3), 0.4 / 4 ** (2 / 3)])
    with pytest.raises(ConfigError, match="eps_fill"):
        make_strategy("bo", problem, seed=0, eps=[0.0, 1.0], eps_fill=1)
    with pytest.raises(ConfigError, match="eps_fill"):
        make_strategy("bo", problem, seed=0, eps=[1.0], eps_fill=-1)


def test_decision_errors_sum_units_and_reach_the_strategy(micro_space: search_spaces.SearchSpace,
                                                          micro_space_path: Path, tmp_path: Path) -> None:
    """The surrogates' per-candidate held-out errors, summed per decision, arrive in the strategy's problem."""
    store = SurrogateStore(tmp_path)
    store.write_manifest(store.header(micro_space, "micro", "hash"), {}, "config")
    expected = []
    for d, decision in enumerate(micro_space.decisions):
        sums = []
        for c, candidate in enumerate(decision.candidates):
            total = 0.0
            for u, unit in enumerate(decision.units):
                error = None if candidate.op == "teacher" else 0.01 * (d + 1) + 0.1 * c + 0.001 * u
                if c == 1 and u == 0:  # a failed candidate: its error at initialisation counts
                    store.write_record(CandidateRecord(candidate_key(unit, candidate.label), unit, decision.name,
                                                       candidate.label, candidate.op, {}, "h", status="failed",
                                                       rel_error_init=0.5))
                    total += 0.5
                    continue
                store.write_record(CandidateRecord(candidate_key(unit, candidate.label), unit, decision.name,
                                                   candidate.label, candidate.op, {}, "h", status="done",
                                                   rel_error=error))
                total += error or 0.0
            sums.append(total)
        expected.append(sums)
    errors = decision_errors(tmp_path, micro_space)
    assert np.allclose([v for row in errors for v in row], [v for row in expected for v in row])
    config = SearchConfig(space=str(micro_space_path), strategy="bo-prior", eps=[0.2], surrogates=str(tmp_path))
    strategy = search_strategy(config, micro_space, lambda arch: 1.0)
    assert strategy.problem.candidate_errors == errors and strategy.prior is not None
    later = SearchConfig(space=str(micro_space_path), strategy="bo-prior", eps=[0.2], surrogates=str(tmp_path / "no"))
    assert search_strategy(later, micro_space, lambda arch: 1.0).problem.candidate_errors is None


def test_hyperparameters_are_refitted_as_trials_grow_and_survive_a_resume(synthetic: Synthetic, monkeypatch) -> None:
    """``refit_growth: 0.25`` fits at 8, 10 and 13 trials of 8..15 (warm-started; the last fit's hyperparameters in
    between); a strategy restored from ``state_dict`` asks the same archs."""
    import strategies.bo as bo  # noqa: PLC0415

    calls = []
    real = bo.fit_gpytorch_mll
    monkeypatch.setattr(bo, "fit_gpytorch_mll", lambda mll, **kw: calls.append(len(mll.model.train_targets))
                        or real(mll, **kw))
    problem = synthetic.problem()
    strategy = make_strategy("bo", problem, seed=0, **OPTIONS, refit_growth=0.25)
    for _ in range(OPTIONS["initial"] + 8):
        strategy.tell(evaluate(problem, synthetic.loss, strategy.ask(1), fail_every=10**9))
    assert calls == [8, 10, 13]
    restored = make_strategy("bo", problem, seed=0, **OPTIONS, refit_growth=0.25)
    restored.load_state_dict(strategy.state_dict())
    assert restored.hyperparameters == strategy.hyperparameters and restored.ask(2) == strategy.ask(2)


def test_additive_kernel_carries_what_a_candidate_does_to_unseen_archs(synthetic: Synthetic) -> None:
    """``kernel: additive`` (first-order additive + joint categorical) ranks unseen archs of an additive log-loss
    better than the product-only categorical kernel from the same initial design, and resumes exactly."""
    problem = dataclasses.replace(synthetic.problem(), max_cost=None, candidate_errors=None)
    rng = np.random.default_rng(5)
    pool = list(dict.fromkeys(tuple(int(i) for i in problem.space.encode(problem.space.sample(rng)))
                              for _ in range(300)))
    truth = np.log([synthetic.loss(problem.space.decode(k)) for k in pool])
    rho, strategies = {}, {}
    for kernel in ("categorical", "additive"):
        strategy = make_strategy("bo", problem, seed=0, **OPTIONS, kernel=kernel)
        strategy.tell(evaluate(problem, synthetic.loss, strategy.ask(OPTIONS["initial"] + 4), fail_every=10**9))
        mean, _ = strategy._posterior(strategy.complete(), pool)
        rho[kernel], strategies[kernel] = spearmanr(mean, truth).statistic, strategy
    assert rho["additive"] > rho["categorical"] + 0.1, rho
    additive = strategies["additive"]
    restored = make_strategy("bo", problem, seed=0, **OPTIONS, kernel="additive")
    restored.load_state_dict(additive.state_dict())
    assert restored.ask(2) == additive.ask(2)


def test_prior_front_design_passes_the_conformance_suite() -> None:
    """On the 8000-arch toy space (more than ``pool``): the front of a random sample refined by mutations."""
    check_strategy("bo-prior", options={**OPTIONS, "initial_design": "prior-front"})


def test_prior_front_design_starts_on_the_prior_front(synthetic: Synthetic) -> None:
    """With the whole space enumerated (``pool`` >= its size), the initial design is ``initial`` archs on the prior's
    Pareto front of (z, cost), one per equal slice of it; its hypervolume beats every one of 10 random designs, and
    another seed draws other archs from the slices."""
    problem = dataclasses.replace(synthetic.problem(), max_cost=None)
    options = {**OPTIONS, "pool": problem.space.size}
    strategy = make_strategy("bo-prior", problem, seed=0, **options, initial_design="prior-front")
    design = [strategy.key(a) for a in strategy.ask(options["initial"])]
    everything = strategy._enumerate()
    z, cost = strategy.prior_z(everything), np.array([strategy.cost(k) for k in everything])
    for key, key_z in zip(design, strategy.prior_z(design), strict=True):
        assert not ((z <= key_z) & (cost <= strategy.cost(key)) & ((z < key_z) | (cost < strategy.cost(key)))).any()
    front = strategy._prior_front(everything)
    slices = np.linspace(0, len(front), options["initial"] + 1).astype(int)
    assert sorted(np.searchsorted(slices, [front.index(k) for k in design], side="right")) == list(
        range(1, options["initial"] + 1))
    other = make_strategy("bo-prior", problem, seed=1, **options, initial_design="prior-front")
    assert set(strategy.key(a) for a in other.ask(options["initial"])) != set(design)

    def hypervolume(keys: list) -> float:
        points = np.array(sorted((strategy.cost(k), synthetic.loss(problem.space.decode(k))) for k in keys))
        reference = (cost.max() * 1.1, max(synthetic.loss(problem.space.decode(k)) for k in everything) * 1.1)
        best, volume = reference[1], 0.0
        for (c, loss), next_cost in zip(points, [*points[1:, 0], reference[0]], strict=True):
            best = min(best, loss)
            volume += (next_cost - c) * (reference[1] - best)
        return volume

    randoms = [hypervolume([strategy.key(a) for a in make_strategy("bo-prior", problem, seed=s, **options)
                            .ask(options["initial"])]) for s in range(10)]
    assert hypervolume(design) > max(randoms), (hypervolume(design), randoms)
    restored = make_strategy("bo-prior", problem, seed=0, **options, initial_design="prior-front")
    restored.load_state_dict(strategy.state_dict())
    assert restored.design == strategy.design and restored.ask(2) == strategy.ask(2)
    with pytest.raises(ConfigError, match="initial_design"):
        make_strategy("bo", problem, seed=0, **OPTIONS, initial_design="prior-front")
