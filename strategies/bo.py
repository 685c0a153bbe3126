"""ε-constrained Bayesian optimisation: minimise the exact cost subject to ``loss <= eps``.

Model: a BoTorch ``SingleTaskGP`` on the (log-)loss of the complete trials (``log_loss``, when every observed loss
is positive), over candidate-index encodings, double precision, inputs normalised to the unit cube (``Normalize``,
fixed bounds per decision), outcomes standardised (``Standardize``), hyperparameters fitted with
``fit_gpytorch_mll``. ``kernel``:

- ``categorical`` (default): a scaled ARD ``CategoricalKernel``, ``k(x, x') = s * exp(-mean_i [x_i != x'_i] / l_i)``.
  It is a product over decisions: one short fitted lengthscale makes archs that differ in that decision
  uncorrelated, so with tens of trials most unseen archs get the prior mean and what is learnt about a candidate
  does not carry over to archs that share it.
- ``additive``: that kernel plus a scaled sum of one-decision categorical kernels, ``s_a * sum_i exp(-[x_i != x'_i]
  / m_i)``: a first-order additive term (each candidate's effect is shared by every arch that uses it, as in an
  additive model over decisions), the joint term for what the decisions do together.

``log_loss: false`` models the loss itself. The log helps when losses span decades, but a loss that is numerically
zero (an arch that keeps every teacher block, or differs only where the loss barely moves: ``1e-7``) becomes an
outlier tens of standard deviations below the rest, and a loss of exactly 0 switches the model to the raw loss
mid-run.

Acquisition (cost is exact, only the loss is modelled), for one ``eps``::

    a(x) = max(0, c_best - c(x)) * P(loss(x) <= eps)      c_best: cheapest complete, feasible trial with loss <= eps
    a(x) = P(loss(x) <= eps)                               when no such trial exists yet (or no a(x) > 0)

``P`` is the GP posterior probability of the latent (log-)loss being below the (log-)threshold. A batch is the
top-``n`` distinct pool archs, slot ``j`` scored with the next eps of the cycle (a list of eps values is cycled
through across asks, tracing the front), in the order given (``eps_order: given``: the pick's eps first) or loosest
first (``eps_order: loosest-first``). A loose bound is met by cheap archs that the model can already find after the
initial design, so asking for them first moves the front most while the model knows little (first modelled ask on
``tiny_ldm_enum``, 10 seeds: +0.041 hypervolume ratio aiming at eps 0.8, +0.014 at eps 0.05, +0.014 for a random
arch). ``eps_fill: k`` adds ``k`` levels between each pair of neighbouring eps, evenly spaced in log-loss, so the
cycle traces the front between the levels the user named, not only at them (with ``loosest-first`` all levels are
sorted loosest first; with ``given`` the added ones follow the named ones, loosest first). An eps that no longer
constrains (a trial under it is as cheap as anything left) leaves the cycle; when none is left, the observed front's
losses take their place (lowest first, or loosest first).

The acquisition is maximised over a candidate pool: the whole unseen feasible space when it has at most ``pool``
archs, otherwise ``pool / 2`` random feasible archs plus mutations (1-2 changes) of incumbents (the cheapest archs
under each eps and the lowest-loss ones), minus archs already asked. The first ``initial`` archs are uniformly
random feasible ones.

Hyperparameters: each fit starts from the previous fit's (warm start), and they are refitted only once the complete
trials have grown by ``refit_growth`` (a fraction) since the last fit; in between, the GP is conditioned on all
trials with the last fitted hyperparameters (``refit_growth: 0`` fits at every ask).
"""
from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import pydantic
import torch
from botorch.exceptions import ModelFittingError
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.kernels.categorical import CategoricalKernel
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import AdditiveKernel, Kernel, ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood

from tocsr_nas.errors import ConfigError

from .base import Key, Observation, Problem, Strategy
from .registry import register_strategy

logger = logging.getLogger(__name__)
INCUMBENTS = 5  # per eps: the cheapest archs under it; plus this many lowest-loss archs
FIT_ITERATIONS = 100  # L-BFGS cap: unregularised categorical lengthscales can creep on for hundreds of steps


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the setting: the GP is tiny, and intra-op threads only add overhead
    (a fit took seconds with 2 threads and a fraction of a second with 1 on a shared 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class BOOptions(pydantic.BaseModel, extra="forbid"):
    eps: float | list[float] | None = None  # loss threshold(s), cycled through; default: the problem's eps
    initial: int = pydantic.Field(10, ge=2)  # random initial design
    pool: int = pydantic.Field(5000, ge=10)  # candidates scored per ask
    log_loss: bool = True  # model log(loss) when every observed loss is positive
    skip_void_eps: bool = True  # drop an eps from the cycle once it no longer constrains (see _active_eps)
    refit_growth: float = pydantic.Field(0.2, ge=0)  # refit the hyperparameters when the trials grew by this fraction
    kernel: Literal["categorical", "additive"] = "categorical"  # see the module docstring
    eps_order: Literal["given", "loosest-first"] = "given"  # the eps cycle's order (see the module docstring)
    eps_fill: int = pydantic.Field(0, ge=0)  # levels added between neighbouring eps (see the module docstring)

    @pydantic.field_validator("eps")
    @classmethod
    def _eps_list(cls, value: float | list[float] | None) -> float | list[float] | None:
        if value is None:
            return value
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ValueError("eps needs at least one value")
        if not all(math.isfinite(v) for v in values):
            raise ValueError("eps values must be finite")
        return value


def fill_levels(eps: list[float], k: int) -> list[float]:
    """``k`` levels between each pair of neighbouring distinct ``eps`` (geometric, i.e. even in log-loss), loosest
    first."""
    named = sorted(set(eps))
    added = [low * (high / low) ** (j / (k + 1)) for low, high in zip(named, named[1:]) for j in range(1, k + 1)]
    return sorted(added, reverse=True)


@register_strategy("bo")
class EpsConstrainedBO(Strategy):
    """GP on the loss, exact cost, constrained expected improvement in cost over a candidate pool."""

    Options = BOOptions

    def __init__(self, problem: Problem, *, seed: int, **options: Any) -> None:
        super().__init__(problem, seed=seed, **options)
        eps = self.options.eps if self.options.eps is not None else list(problem.eps)
        if not eps:
            raise ConfigError("strategy 'bo' needs eps (an option, or the search's eps)", key="eps")
        self.eps_values = [float(e) for e in (eps if isinstance(eps, list) else [eps])]
        if self.options.eps_fill and min(self.eps_values) <= 0:
            raise ConfigError("strategy 'bo': eps_fill spaces levels in log-loss, so every eps must be > 0",
                              key="eps_fill")
        self.eps_values += fill_levels(self.eps_values, self.options.eps_fill)
        if self.options.eps_order == "loosest-first":
            self.eps_values = sorted(set(self.eps_values), reverse=True)
        self.n_random = 0
        self.n_modelled = 0  # archs picked by the acquisition (the position in the eps cycle)
        self.hyperparameters: dict[str, list[Any]] | None = None  # the last fit's, by parameter name
        self.fitted_on = 0  # complete trials at the last fit

    @property
    def min_trials(self) -> int:
        return self.options.initial

    # -- asking -------------------------------------------------------------------------------------------------
    def _propose(self, n: int) -> list[Key]:
        complete = self.complete()
        n_random = n if len(complete) < 2 else max(0, min(n, self.options.initial - self.n_random))
        keys = self._initial_design(n_random)
        self.n_random += len(keys)
        if len(keys) == n or n_random == n:
            return keys
        pool = self._pool(complete, set(keys))
        if not pool:
            return keys
        mean, std = self._posterior(complete, pool)
        costs = np.array([self.cost(k) for k in pool])
        cycle = self._active_eps(complete, float(costs.min()))
        free = np.ones(len(pool), dtype=bool)
        while len(keys) < n and free.any():
            eps = cycle[self.n_modelled % len(cycle)]
            scores = np.where(free, self._acquisition(eps, complete, mean, std, costs), -np.inf)
            best = int(np.argmax(scores))
            free[best] = False
            keys.append(pool[best])
            self.n_modelled += 1
        return keys

    def _initial_design(self, n: int) -> list[Key]:
        """``n`` archs of the initial design: uniformly random feasible ones."""
        return self.sample_new(n, feasible_only=True)

    def _active_eps(self, complete: list[Observation], cheapest: float) -> list[float]:
        """The eps values of the cycle that still constrain the search.

        An eps is void once a complete feasible trial under it costs no more than the cheapest arch left in the pool
        (e.g. the cheapest arch of the space satisfies it): nothing can improve on it, and scoring it would spend
        evaluations on the mere probability of meeting it. When every eps is void, the losses of the observed Pareto
        front that are not void take their place (each asks for a cheaper arch at that loss: tracing the front).
        """
        if not self.options.skip_void_eps:
            return self.eps_values
        under = [(o.loss, self.cost(o.key)) for o in complete if self.feasible(o.key)]

        def void(eps: float) -> bool:
            return any(loss <= eps and cost <= cheapest for loss, cost in under)

        active = [eps for eps in self.eps_values if not void(eps)]
        if active:
            return active
        front = sorted({loss for loss, cost in under if not any(l2 <= loss and c2 < cost for l2, c2 in under)},
                       reverse=self.options.eps_order == "loosest-first")
        return [eps for eps in front if not void(eps)] or self.eps_values

    def _transform(self, loss: np.ndarray | float, complete: list[Observation]) -> np.ndarray | float:
        use_log = self.options.log_loss and all(o.loss > 0 for o in complete)
        if not use_log:
            return loss
        return np.log(np.maximum(loss, 1e-300))

    def _features(self, keys: list[Key]) -> torch.Tensor:
        """The GP's inputs of ``keys``, shape ``(len(keys), d)``: the candidate indices."""
        return torch.tensor(keys, dtype=torch.float64).reshape(len(keys), len(self.cardinalities))

    def _model(self, x: torch.Tensor, y: torch.Tensor) -> SingleTaskGP:
        """The unfitted GP on inputs ``x`` (from :meth:`_features`) and outcomes ``y``."""
        d = len(self.cardinalities)
        bounds = torch.zeros(2, d, dtype=torch.float64)
        bounds[1] = torch.tensor(np.maximum(self.cardinalities - 1, 1), dtype=torch.float64)
        kernel = self._decision_kernel(d)
        return SingleTaskGP(x, y, covar_module=kernel, input_transform=Normalize(d, bounds=bounds),
                            outcome_transform=Standardize(m=1))

    def _decision_kernel(self, d: int) -> Kernel:
        """The kernel over the ``d`` candidate-index columns (see ``kernel`` in the module docstring)."""
        joint = ScaleKernel(CategoricalKernel(ard_num_dims=d, active_dims=tuple(range(d)),
                                              lengthscale_constraint=GreaterThan(1e-6)))
        if self.options.kernel == "categorical":
            return joint
        additive = ScaleKernel(AdditiveKernel(*[
            CategoricalKernel(active_dims=(i,), lengthscale_constraint=GreaterThan(1e-6)) for i in range(d)]))
        return additive + joint

    def _posterior(self, complete: list[Observation], pool: list[Key]) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the latent (log-)loss at ``pool``, shape ``(len(pool),)``."""
        y = torch.tensor(self._transform(np.array([o.loss for o in complete]), complete),
                         dtype=torch.float64).unsqueeze(-1)
        model = self._model(self._features([o.key for o in complete]), y)
        seed = int(self.rng.integers(2**31))  # drawn at every ask, fitted or not: the same stream either way
        if self.hyperparameters is not None:
            self._set_hyperparameters(model, self.hyperparameters)
        if self.hyperparameters is None or len(complete) >= self.fitted_on * (1 + self.options.refit_growth):
            with torch.random.fork_rng(), single_thread():  # the fit's retries use torch's RNG: seed it from ours
                torch.manual_seed(seed)
                try:
                    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model),
                                     optimizer_kwargs={"options": {"maxiter": FIT_ITERATIONS}})
                except ModelFittingError as err:  # keep the start values: a rough model still ranks the pool
                    logger.warning("strategy 'bo': GP fit failed on %d trials (%s)", len(complete), err)
            self.hyperparameters = {name: p.detach().tolist() for name, p in model.named_parameters()}
            self.fitted_on = len(complete)
        with single_thread():
            model.eval()
            with torch.no_grad():
                # one point per batch (N, 1, d): marginals only, no N x N posterior covariance
                posterior = model.posterior(self._features(pool).unsqueeze(-2))
                mean = posterior.mean.reshape(-1).numpy()
                std = posterior.variance.clamp_min(1e-12).sqrt().reshape(-1).numpy()
        return mean, std

    @staticmethod
    def _set_hyperparameters(model: SingleTaskGP, values: dict[str, list[Any]]) -> None:
        """Copy fitted hyperparameters (``named_parameters`` of a GP built the same way) into ``model``."""
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                parameter.copy_(torch.tensor(values[name], dtype=parameter.dtype))

    def _acquisition(self, eps: float, complete: list[Observation], mean: np.ndarray, std: np.ndarray,
                     costs: np.ndarray) -> np.ndarray:
        threshold = self._transform(eps, complete)
        z = torch.as_tensor((threshold - mean) / std)
        prob = torch.special.ndtr(z).numpy()
        under = [self.cost(o.key) for o in complete if o.loss <= eps and self.feasible(o.key)]
        if under:
            acq = np.maximum(0.0, min(under) - costs) * prob
            if acq.max() > 0:
                return acq
        return prob

    # -- the candidate pool -------------------------------------------------------------------------------------
    def _pool(self, complete: list[Observation], taken: set[Key]) -> list[Key]:
        size = self.options.pool
        if self.space.size <= size:
            return [k for k in self._enumerate() if self.is_new(k) and k not in taken and self.feasible(k)]
        pool = self.sample_new(size // 2, feasible_only=True, exclude=taken)
        members = set(pool) | taken
        parents = self._incumbents(complete)
        per_parent = (size - len(pool)) // max(len(parents), 1)
        for parent in parents:
            arch = self.space.decode(parent)
            for _ in range(per_parent):
                child = self.key(self.space.mutate(arch, self.rng, n_changes=int(self.rng.integers(1, 3))))
                if child not in members and self.is_new(child) and self.feasible(child):
                    members.add(child)
                    pool.append(child)
        return pool

    def _incumbents(self, complete: list[Observation]) -> list[Key]:
        """The cheapest feasible archs under each eps, and the lowest-loss archs (distinct, in a fixed order)."""
        chosen: list[Key] = []
        for eps in self.eps_values:
            under = sorted((self.cost(o.key), o.key) for o in complete if o.loss <= eps and self.feasible(o.key))
            chosen += [k for _, k in under[:INCUMBENTS]]
        chosen += [o.key for o in sorted(complete, key=lambda o: (o.loss, o.key))[:INCUMBENTS]]
        return list(dict.fromkeys(chosen))

    # -- state --------------------------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"n_random": self.n_random, "n_modelled": self.n_modelled, "hyperparameters": self.hyperparameters,
                "fitted_on": self.fitted_on}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.n_random = int(state["n_random"])
        self.n_modelled = int(state["n_modelled"])
        self.hyperparameters = state.get("hyperparameters")  # absent in states saved before warm starts
        self.fitted_on = int(state.get("fitted_on", 0))
