"""NNI's HPO tuners as strategies: ``nni-tpe``, ``nni-evolution``, ``nni-anneal``, ``nni-random`` (extra ``nni``).

NNI 3.0 (the last release; the project is archived) is driven through its tuner API, without an NNI experiment or
its web server: ``update_search_space`` with the space as NNI search-space JSON (one ``choice`` of candidate labels
per decision, :func:`nni_search_space`), ``generate_parameters(parameter_id)`` to ask,
``receive_trial_result`` + ``trial_end(success=True)`` for a complete trial, ``trial_end(success=False)`` for a
failed one, and ``import_data`` for trials the strategy did not ask.

- NNI's tuners are single-objective: they minimise the loss (``optimize_mode="minimize"``); the cost enters only
  through ``problem.max_cost`` (an arch over it is never asked).
- A proposal already seen, repeated in the batch or over ``max_cost`` is ended as failed and drawn again; after
  ``retries`` draws (or when the tuner raises, e.g. the evolution tuner's ``NoMoreTrialError``) a uniformly random
  new feasible arch is used instead, so the strategy never repeats an arch.
- Some tuners draw from Python's and NumPy's global RNGs (the evolution tuner has no seed). Every tuner call runs
  with both global RNGs seeded from ``(seed, call number)`` and restored afterwards, so the strategy is
  deterministic for a seed and leaves the global random state as it found it.
- ``state_dict`` holds the log of tuner calls; ``load_state_dict`` replays it into a fresh tuner (with the same
  per-call seeds), which puts the tuner in exactly the state it had.

``nni`` is imported only when one of these strategies is built; nothing else in the toolkit imports it.
``nni-anneal`` is NNI's ``HyperoptTuner("anneal")`` and also needs ``hyperopt``.
"""
from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pydantic

from search_spaces import SearchSpace

from .base import Key, Observation, Problem, Strategy
from .registry import register_strategy

logger = logging.getLogger(__name__)


def nni_search_space(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """The space as NNI search-space JSON: ``{decision: {"_type": "choice", "_value": [labels]}}``."""
    return {d.name: {"_type": "choice", "_value": [c.label for c in d.candidates]} for d in space.decisions}


class NNIOptions(pydantic.BaseModel, extra="forbid"):
    retries: int = pydantic.Field(20, ge=1)  # rejected draws before falling back to a random new arch


class EvolutionOptions(NNIOptions):
    population_size: int = pydantic.Field(32, ge=2)


@contextlib.contextmanager
def _seeded_globals(seed: int) -> Iterator[None]:
    """Seed Python's and NumPy's global RNGs for one tuner call, then restore both."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class NNIStrategy(Strategy):
    """Base of the NNI strategies: the tuner, the draw loop and the replayable call log."""

    Options: ClassVar[type[pydantic.BaseModel]] = NNIOptions

    def __init__(self, problem: Problem, *, seed: int, **options: Any) -> None:
        super().__init__(problem, seed=seed, **options)
        self._log: list[list[Any]] = []  # tuner calls: [method, args...], replayed by load_state_dict
        self._running: dict[Key, int] = {}  # asked, not yet told: key -> parameter id
        self._next_id = 0
        self.tuner = self._fresh_tuner()

    def _make_tuner(self) -> Any:
        raise NotImplementedError

    def _fresh_tuner(self) -> Any:
        with _seeded_globals(self.seed):
            tuner = self._make_tuner()
            tuner.update_search_space(nni_search_space(self.space))
            self._seed_tuner(tuner)
        return tuner

    def _seed_tuner(self, tuner: Any) -> None:
        """Seed RNGs a tuner creates for itself without taking a seed (none by default)."""

    def _call(self, method: str, *args: Any) -> Any:
        """``tuner.method(*args)`` with seeded global RNGs; logged for replay (also when it raises)."""
        self._log.append([method, *args])
        seed = int(np.random.SeedSequence([self.seed, len(self._log)]).generate_state(1)[0])
        with _seeded_globals(seed):
            return getattr(self.tuner, method)(*args)

    def _params(self, key: Key) -> dict[str, str]:
        return {d.name: d.candidates[i].label for d, i in zip(self.space.decisions, key, strict=True)}

    def _key(self, params: dict[str, Any]) -> Key:
        return tuple(d.index(params[d.name]) for d in self.space.decisions)

    def _generate(self) -> tuple[int, Key | None]:
        parameter_id = self._next_id
        self._next_id += 1
        try:
            params = self._call("generate_parameters", parameter_id)
        except Exception as err:  # noqa: BLE001 (NoMoreTrialError and tuner-internal limits: fall back)
            logger.debug("nni tuner gave no parameters (%s): %s", type(err).__name__, err)
            return parameter_id, None
        return parameter_id, self._key(params)

    # -- the strategy interface ---------------------------------------------------------------------------------
    def _tuner_proposal(self, taken: set[Key]) -> Key | None:
        """A new feasible arch from the tuner, or None when it gives none within ``retries`` draws."""
        for _ in range(self.options.retries):
            parameter_id, key = self._generate()
            if key is None:
                return None
            if key not in self._seen and key not in taken and self.feasible(key):
                self._running[key] = parameter_id
                return key
            self._call("trial_end", parameter_id, False)
        return None

    def _propose(self, n: int) -> list[Key]:
        return self.fill_with_children([], n, self._tuner_proposal, feasible_only=True)

    def _observe(self, observations: list[Observation]) -> None:
        unasked = []
        for obs in observations:
            parameter_id = self._running.pop(obs.key, None)
            if parameter_id is None:
                if obs.loss is not None:
                    unasked.append({"parameter": self._params(obs.key), "value": obs.loss})
                continue
            if obs.loss is not None:
                self._call("receive_trial_result", parameter_id, self._params(obs.key), obs.loss)
            self._call("trial_end", parameter_id, obs.loss is not None)
        if unasked:
            self._call("import_data", unasked)

    def _extra_state(self) -> dict[str, Any]:
        return {"log": self._log, "running": [[list(k), i] for k, i in self._running.items()],
                "next_id": self._next_id}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._log = []
        self.tuner = self._fresh_tuner()
        for method, *args in state["log"]:
            try:
                self._call(method, *args)
            except Exception:  # noqa: BLE001,S110 (the original call raised too: replayed as it happened)
                pass
        self._running = {tuple(int(i) for i in k): int(i) for k, i in state["running"]}
        self._next_id = int(state["next_id"])


@register_strategy("nni-tpe")
class NNITPE(NNIStrategy):
    """NNI's TPE tuner (``nni.algorithms.hpo.tpe_tuner.TpeTuner``)."""

    def _make_tuner(self) -> Any:
        from nni.algorithms.hpo.tpe_tuner import TpeTuner  # noqa: PLC0415

        return TpeTuner(optimize_mode="minimize", seed=self.seed)


@register_strategy("nni-random")
class NNIRandom(NNIStrategy):
    """NNI's random tuner (``nni.algorithms.hpo.random_tuner.RandomTuner``)."""

    def _make_tuner(self) -> Any:
        from nni.algorithms.hpo.random_tuner import RandomTuner  # noqa: PLC0415

        return RandomTuner(seed=self.seed, optimize_mode="minimize")


@register_strategy("nni-evolution")
class NNIEvolution(NNIStrategy):
    """NNI's evolution tuner (``nni.algorithms.hpo.evolution_tuner.EvolutionTuner``)."""

    Options = EvolutionOptions

    @property
    def min_trials(self) -> int:
        return self.options.population_size

    def _make_tuner(self) -> Any:
        from nni.algorithms.hpo.evolution_tuner import EvolutionTuner  # noqa: PLC0415

        return EvolutionTuner(optimize_mode="minimize", population_size=self.options.population_size)

    def _seed_tuner(self, tuner: Any) -> None:
        # update_search_space draws the initial population from an unseeded np.random.RandomState(): redraw it
        # from a seeded one (NNI 3.0's own method for one random individual)
        tuner.random_state = np.random.RandomState(self.seed % 2**32)
        tuner.population = []
        for _ in range(tuner.population_size):
            tuner._random_generate_individual()  # noqa: SLF001


@register_strategy("nni-anneal")
class NNIAnneal(NNIStrategy):
    """NNI's annealing tuner (``HyperoptTuner("anneal")``; needs ``hyperopt``)."""

    def _make_tuner(self) -> Any:
        try:
            from nni.algorithms.hpo.hyperopt_tuner import HyperoptTuner  # noqa: PLC0415
        except ModuleNotFoundError as err:
            from tocsr_nas.errors import ConfigError  # noqa: PLC0415

            raise ConfigError(f"strategy 'nni-anneal' needs the package '{err.name}' (pip install {err.name})",
                              key="strategy") from err

        return HyperoptTuner("anneal", optimize_mode="minimize")

    def _seed_tuner(self, tuner: Any) -> None:
        # update_search_space gives hyperopt an unseeded np.random.RandomState(); NNI draws hyperopt's seeds from it
        tuner.rval.rstate = np.random.RandomState(self.seed % 2**32)
