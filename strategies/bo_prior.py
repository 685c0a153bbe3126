"""ε-constrained BO with a prior from distillation: ``bo`` whose GP starts from what ``distill-blocks`` measured.

Every candidate's held-out relative error is measured when its surrogate is trained; the search hands them to the
strategy as ``Problem.candidate_errors`` (per decision, per candidate, summed over the decision's units; see
``tocsr_nas.distill.store.decision_errors``). The prior of an arch is additive over its decisions::

    z(x) = log(delta + sum_d e[d][x_d])        delta: half the smallest positive candidate error

and enters the GP twice: as an input column next to the candidate indices, and through the prior mean
``m(x) = b + w * z(x)`` (``b``, ``w`` fitted with the kernel hyperparameters by marginal likelihood). The kernel is
``bo``'s kernel over the indices (``kernel``: categorical, or additive + categorical) ``+ s2 * RBF(z)``: the mean
carries the prior's trend, the RBF term a smooth bend of it, the index kernel what the prior misses. So after a few
trials the model already ranks unseen archs by the prior, where ``bo`` knows nothing of an arch that shares no
decisions with the trials.

``initial_design: prior-front`` also spends the initial design on the prior: instead of ``initial`` uniformly
random archs, one arch drawn at random from each of ``initial`` equal slices (by rank) of the Pareto front of
(prior error ``exp(z(x))``, exact cost), asked in the order that grows that front's hypervolume fastest (greedy), so
every prefix of the design is spread along it. The prior already orders archs well, so the design starts on the
front rather than anywhere (``tiny_ldm_enum``: 10 archs evenly spread along it give a hypervolume ratio of 0.92).
The front is taken over the whole feasible space when it has at most ``pool`` archs, otherwise over ``pool`` random
feasible archs refined by a few rounds of one-change mutations of its members. The default, ``random``, is
``bo``'s design.

Without candidate errors (a search without a surrogates folder) it is exactly ``bo`` (a warning says so).
Everything else (options, eps cycle, acquisition, pool) is ``bo``'s (:mod:`strategies.bo`).
"""
from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import torch
from botorch.models import SingleTaskGP
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from gpytorch.kernels import RBFKernel, ScaleKernel
from gpytorch.means import Mean
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from .base import Key, Problem
from .bo import BOOptions, EpsConstrainedBO
from .registry import register_strategy

logger = logging.getLogger(__name__)
DESIGN_ROUNDS = 5  # mutation rounds that refine the prior's front when the space is too large to enumerate


class PriorMean(Mean):
    """``m(x) = bias + weight * x[..., column]``: a linear mean on one (normalised) input column."""

    def __init__(self, column: int) -> None:
        super().__init__()
        self.column = column
        self.register_parameter("bias", torch.nn.Parameter(torch.zeros(1, dtype=torch.float64)))
        self.register_parameter("weight", torch.nn.Parameter(torch.ones(1, dtype=torch.float64)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias + self.weight * x[..., self.column]


def additive_prior(errors: tuple[tuple[float, ...], ...], cardinalities: np.ndarray) -> list[np.ndarray]:
    """Per decision, the candidates' errors as arrays (checked against the space's shape)."""
    tables = [np.asarray(e, dtype=np.float64) for e in errors]
    shape = [len(t) for t in tables]
    if shape != [int(c) for c in cardinalities] or any(not np.isfinite(t).all() or (t < 0).any() for t in tables):
        raise ValueError(f"candidate_errors of shape {shape} do not fit the space {list(cardinalities)}")
    return tables


class PriorBOOptions(BOOptions):
    initial_design: Literal["random", "prior-front"] = "random"  # see the module docstring


@register_strategy("bo-prior")
class PriorBO(EpsConstrainedBO):
    """``bo`` with the distillation errors as the GP's prior mean and an extra input (see the module docstring)."""

    Options = PriorBOOptions

    def __init__(self, problem: Problem, *, seed: int, **options: Any) -> None:
        super().__init__(problem, seed=seed, **options)
        self.prior: list[np.ndarray] | None = None
        self.design: list[Key] | None = None  # the prior-front design, made at the first ask that needs it
        if problem.candidate_errors is None:
            logger.warning("strategy 'bo-prior': no candidate errors (a search without surrogates): running as 'bo'")
            return
        self.prior = additive_prior(problem.candidate_errors, self.cardinalities)
        positive = np.concatenate(self.prior)
        positive = positive[positive > 0]
        self.delta = 0.5 * float(positive.min()) if len(positive) else 1.0
        low = sum(float(t.min()) for t in self.prior)
        high = sum(float(t.max()) for t in self.prior)
        self.z_bounds = (float(np.log(self.delta + low)), float(np.log(self.delta + high)))

    # -- the initial design -------------------------------------------------------------------------------------
    def _initial_design(self, n: int) -> list[Key]:
        if self.prior is None or self.options.initial_design == "random":
            return super()._initial_design(n)
        if self.design is None:
            self.design = self._prior_front_design()
        keys = [k for k in self.design if self.is_new(k)][:n]
        return keys + self.sample_new(n - len(keys), feasible_only=True, exclude=set(keys))

    def _prior_front_design(self) -> list[Key]:
        """``initial`` feasible archs, one from each equal slice of the prior's front (see the module docstring)."""
        if self.space.size <= self.options.pool:
            candidates = [k for k in self._enumerate() if self.feasible(k)]
        else:
            candidates = self.sample_new(self.options.pool, feasible_only=True)
            members = set(candidates)
            for _ in range(DESIGN_ROUNDS):
                front = self._prior_front(candidates)
                for parent in front:
                    arch = self.space.decode(parent)
                    for _ in range(max(1, self.options.pool // (DESIGN_ROUNDS * len(front)))):
                        child = self.key(self.space.mutate(arch, self.rng, n_changes=1))
                        if child not in members and self.feasible(child):
                            members.add(child)
                            candidates.append(child)
        front = self._prior_front(candidates)
        if len(front) > self.options.initial:
            bounds = np.linspace(0, len(front), self.options.initial + 1).astype(int)
            front = [front[int(self.rng.integers(low, high))] for low, high in zip(bounds[:-1], bounds[1:])]
        return self._greedy_hypervolume_order(front)

    def _greedy_hypervolume_order(self, keys: list[Key]) -> list[Key]:
        """``keys`` reordered so that each next one adds the most hypervolume of (prior error, cost) to those before
        (reference: 1.1 times the largest of each)."""
        points = np.column_stack([np.exp(self.prior_z(keys)), [self.cost(k) for k in keys]])
        indicator = HV(ref_point=points.max(axis=0) * 1.1 + 1e-12)
        order: list[int] = []
        while len(order) < len(keys):
            rest = [i for i in range(len(keys)) if i not in order]
            order.append(max(rest, key=lambda i: (indicator(points[[*order, i]]), -i)))
        return [keys[i] for i in order]

    def _prior_front(self, keys: list[Key]) -> list[Key]:
        """The archs of ``keys`` on the Pareto front of (z(x), cost), by cost."""
        if not keys:
            return []
        objectives = np.column_stack([self.prior_z(keys), [self.cost(k) for k in keys]])
        front = NonDominatedSorting().do(objectives, only_non_dominated_front=True)
        return sorted((keys[i] for i in front), key=lambda k: (self.cost(k), k))

    def _extra_state(self) -> dict[str, Any]:
        design = None if self.design is None else [list(k) for k in self.design]
        return {**super()._extra_state(), "design": design}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        design = state.get("design")
        self.design = None if design is None else [tuple(int(i) for i in k) for k in design]

    # -- the model -----------------------------------------------------------------------------------------------
    def prior_z(self, keys: list[Key]) -> np.ndarray:
        """``z(x)`` of each key (the log of the summed candidate errors)."""
        assert self.prior is not None
        index = np.asarray(keys, dtype=np.int64).reshape(len(keys), len(self.prior))
        total = sum(table[index[:, d]] for d, table in enumerate(self.prior))
        return np.log(self.delta + total)

    def _features(self, keys: list[Key]) -> torch.Tensor:
        indices = super()._features(keys)
        if self.prior is None:
            return indices
        z = torch.tensor(self.prior_z(keys), dtype=torch.float64).unsqueeze(-1)
        return torch.cat([indices, z], dim=-1)

    def _model(self, x: torch.Tensor, y: torch.Tensor) -> SingleTaskGP:
        if self.prior is None:
            return super()._model(x, y)
        d = len(self.cardinalities)
        bounds = torch.zeros(2, d + 1, dtype=torch.float64)
        bounds[1, :d] = torch.tensor(np.maximum(self.cardinalities - 1, 1), dtype=torch.float64)
        low, high = self.z_bounds
        bounds[0, d], bounds[1, d] = low, max(high, low + 1e-9)
        kernel = self._decision_kernel(d) + ScaleKernel(RBFKernel(active_dims=(d,)))
        return SingleTaskGP(x, y, covar_module=kernel, mean_module=PriorMean(d),
                            input_transform=Normalize(d + 1, bounds=bounds), outcome_transform=Standardize(m=1))
