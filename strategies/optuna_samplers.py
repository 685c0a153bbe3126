"""Optuna samplers as strategies: ``optuna-tpe``, ``optuna-gp`` and ``optuna-nsga2`` (extra ``optuna``).

Each strategy keeps an in-memory Optuna study over the space's categorical decisions (one
``CategoricalDistribution`` of candidate labels per decision) and drives it with Optuna's own ask/tell API:

- ``ask``: ``study.ask(distributions)`` with a sampler seeded per draw from ``(seed, draw number)``, so the
  proposal depends only on the seed and the trials told (never on RNG state hidden in a sampler object). A
  proposal already seen, repeated within the batch or over ``problem.max_cost`` is told to the study as FAIL (Optuna
  ignores failed trials) and drawn again; after ``retries`` such draws a uniformly random new feasible arch is
  enqueued (``study.enqueue_trial``) instead, so the strategy never repeats an arch and stops only when the space is
  exhausted.
- ``tell``: complete trials get the values ``(loss, cost)`` (``multi_objective``, default) or ``loss``; failed and
  infeasible ones FAIL; trials the strategy did not ask are added with ``study.add_trial``. With the problem's
  ``eps`` (and ``constrain_eps``), ``loss - eps[0] <= 0`` is passed to the sampler as a constraint.
- ``state_dict``: every trial of the study (params, state, values, system attributes such as NSGA-II's
  generations), replayed into a fresh study by ``load_state_dict``, so a resumed strategy asks exactly what the
  original would.

Optuna is imported when a strategy is built, not when :mod:`strategies` is imported. Tested with Optuna 5.0.
"""
from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pydantic

from .base import Key, Observation, Problem, Strategy
from .registry import register_strategy

logger = logging.getLogger(__name__)


class OptunaOptions(pydantic.BaseModel, extra="forbid"):
    n_startup_trials: int = pydantic.Field(10, ge=1)  # random trials before the model (TPE, GP)
    multi_objective: bool = True  # minimise (loss, cost); False: the loss only
    constrain_eps: bool = True  # pass loss <= eps[0] to the sampler as a constraint when the problem has eps
    retries: int = pydantic.Field(20, ge=1)  # rejected draws before falling back to a random new arch


class NSGA2Options(OptunaOptions):
    population_size: int = pydantic.Field(20, ge=2)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs every told trial at INFO: keep it at WARNING while the strategy talks to its study."""
    import optuna  # noqa: PLC0415

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def _json_safe(attrs: dict[str, Any]) -> dict[str, Any]:
    safe = {}
    for key, value in attrs.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        safe[key] = value
    return safe


class OptunaStrategy(Strategy):
    """Base of the Optuna strategies: the study, the draw loop and the replayable state."""

    Options: ClassVar[type[pydantic.BaseModel]] = OptunaOptions

    def __init__(self, problem: Problem, *, seed: int, **options: Any) -> None:
        super().__init__(problem, seed=seed, **options)
        import optuna  # noqa: PLC0415

        self._optuna = optuna
        self.distributions = {d.name: optuna.distributions.CategoricalDistribution([c.label for c in d.candidates])
                              for d in self.space.decisions}
        self._draws = 0
        self._running: dict[Key, int] = {}  # asked, not yet told: key -> trial number
        self._telling: float | None = None  # the loss being told (see _constraints)
        self.study = self._new_study()

    # -- what a subclass defines --------------------------------------------------------------------------------
    def _sampler(self, seed: int) -> Any:
        raise NotImplementedError

    @property
    def min_trials(self) -> int:
        return self.options.n_startup_trials

    # -- the study ------------------------------------------------------------------------------------------------
    def _new_study(self) -> Any:
        directions = ["minimize", "minimize"] if self.options.multi_objective else ["minimize"]
        with _quiet_optuna():
            return self._optuna.create_study(directions=directions, sampler=self._sampler(self.seed))

    def _constraints(self, trial: Any) -> list[float]:
        """``loss - eps`` (<= 0 is feasible) for the sampler's ``constraints_func`` (Optuna calls it from ``tell``
        before the trial holds its values: the loss being told is used then)."""
        loss = trial.values[0] if trial.values else self._telling
        return [loss - self.problem.eps[0]]

    @property
    def constraints_func(self) -> Any:
        return self._constraints if self.options.constrain_eps and self.problem.eps else None

    def _params(self, key: Key) -> dict[str, str]:
        return {d.name: d.candidates[i].label for d, i in zip(self.space.decisions, key, strict=True)}

    def _key(self, params: dict[str, Any]) -> Key:
        return tuple(d.index(params[d.name]) for d in self.space.decisions)

    def _values(self, observation: Observation) -> list[float]:
        return [observation.loss, self.cost(observation.key)] if self.options.multi_objective else [observation.loss]

    def _draw(self) -> Any:
        """One ``study.ask`` with a sampler seeded from the draw number."""
        seed = int(np.random.SeedSequence([self.seed, self._draws]).generate_state(1)[0])
        self._draws += 1
        self.study.sampler = self._sampler(seed)
        return self.study.ask(self.distributions)

    # -- the strategy interface ---------------------------------------------------------------------------------
    def _propose(self, n: int) -> list[Key]:
        keys: list[Key] = []
        fail = self._optuna.trial.TrialState.FAIL
        with _quiet_optuna():
            while len(keys) < n:
                for _ in range(self.options.retries):
                    trial = self._draw()
                    key = self._key(trial.params)
                    if key not in self._seen and key not in keys and self.feasible(key):
                        break
                    self.study.tell(trial, state=fail)
                else:  # the sampler keeps proposing seen archs: enqueue a random new one
                    extra = self.sample_new(1, feasible_only=True, exclude=set(keys))
                    if not extra:
                        break
                    key = extra[0]
                    self.study.enqueue_trial(self._params(key))
                    trial = self._draw()
                self._running[key] = trial.number
                keys.append(key)
        return keys

    def _observe(self, observations: list[Observation]) -> None:
        state = self._optuna.trial.TrialState
        with _quiet_optuna():
            for obs in observations:
                complete = obs.loss is not None
                number = self._running.pop(obs.key, None)
                if number is not None:
                    self.study.sampler = self._sampler(self.seed)  # its after_trial records the constraints
                    if complete:
                        self._telling = obs.loss
                        self.study.tell(number, self._values(obs))
                    else:
                        self.study.tell(number, state=state.FAIL)
                    continue
                system_attrs = {}
                if complete and self.constraints_func is not None:
                    system_attrs["constraints"] = [obs.loss - self.problem.eps[0]]
                self.study.add_trial(self._optuna.trial.create_trial(
                    params=self._params(obs.key), distributions=self.distributions,
                    values=self._values(obs) if complete else None,
                    state=state.COMPLETE if complete else state.FAIL, system_attrs=system_attrs))

    def _extra_state(self) -> dict[str, Any]:
        trials = [{"params": t.params, "state": t.state.name, "values": t.values,
                   "system_attrs": _json_safe(t.system_attrs)} for t in self.study.get_trials(deepcopy=False)]
        return {"draws": self._draws, "running": [[list(k), n] for k, n in self._running.items()], "trials": trials}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        states = self._optuna.trial.TrialState
        self.study = self._new_study()
        with _quiet_optuna():
            for t in state["trials"]:
                self.study.add_trial(self._optuna.trial.create_trial(
                    params=t["params"], distributions=self.distributions, values=t["values"],
                    state=states[t["state"]], system_attrs=t["system_attrs"]))
        self._draws = int(state["draws"])
        self._running = {tuple(int(i) for i in k): int(n) for k, n in state["running"]}


@register_strategy("optuna-tpe")
class OptunaTPE(OptunaStrategy):
    """Optuna's (multi-objective, multivariate) TPE sampler."""

    def _sampler(self, seed: int) -> Any:
        return self._optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.options.n_startup_trials,
                                                multivariate=True, constraints_func=self.constraints_func,
                                                warn_independent_sampling=False)


@register_strategy("optuna-gp")
class OptunaGP(OptunaStrategy):
    """Optuna's Gaussian-process sampler (categorical kernel); the torch RNG it may use is forked per draw."""

    def __init__(self, problem: Problem, *, seed: int, **options: Any) -> None:
        import optuna  # noqa: PLC0415

        if not hasattr(optuna.samplers, "GPSampler"):
            from tocsr_nas.errors import ConfigError  # noqa: PLC0415

            raise ConfigError(f"strategy 'optuna-gp' needs Optuna >= 3.6 (GPSampler), found {optuna.__version__}",
                              key="strategy")
        super().__init__(problem, seed=seed, **options)

    def _sampler(self, seed: int) -> Any:
        return self._optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.options.n_startup_trials,
                                               constraints_func=self.constraints_func,
                                               warn_independent_sampling=False)

    def _draw(self) -> Any:
        import torch  # noqa: PLC0415

        with torch.random.fork_rng(devices=[]):
            return super()._draw()


@register_strategy("optuna-nsga2")
class OptunaNSGA2(OptunaStrategy):
    """Optuna's NSGA-II sampler (generations recorded in the study's trials)."""

    Options = NSGA2Options

    @property
    def min_trials(self) -> int:
        return self.options.population_size

    def _sampler(self, seed: int) -> Any:
        return self._optuna.samplers.NSGAIISampler(seed=seed, population_size=self.options.population_size,
                                                   constraints_func=self.constraints_func)
