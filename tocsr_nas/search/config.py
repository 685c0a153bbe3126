"""The configuration of one search (YAML/CLI -> a validated object)."""
from __future__ import annotations

from typing import Any

import pydantic

from evaluators.context import CONSTRAINT_METRICS

from ..distill.config import LatentConfig
from ..executors import ExecutorConfig

EPS_RANGE = (0.0, 10.0)  # relative distillation loss: 0 = the teacher, 1 = predicting the mean
DEFAULT_OBJECTIVES = ["loss", "gmacs"]


class ValidationConfig(pydantic.BaseModel, extra="forbid"):
    """The fixed validation set of the distillation evaluator: held-out crops (never the distillation stream)."""

    latents: LatentConfig = LatentConfig(flips=False)
    count: int = pydantic.Field(32, gt=0)
    batch_size: int = pydantic.Field(8, gt=0)
    seed: int = 0


class EvaluatorSpec(pydantic.BaseModel, extra="forbid"):
    """One evaluator of a search: its registry name and its options (``evaluators: [cost, {name: latency, ...}]``)."""

    name: str
    options: dict[str, Any] = {}


class SearchConfig(pydantic.BaseModel, extra="forbid"):
    """What to search, with which strategy, for how long, under which constraints.

    ``objectives`` = ``[loss metric, cost metric]``: the strategy minimises both; the loss comes from an expensive
    evaluator and ``eps`` bounds it, the cost from a cheap one (exact, e.g. ``gmacs``, ``params_m``,
    ``latency_ms``). ``evaluators`` default: ``cost``, ``latency`` when a latency objective or bound is set, and
    ``distillation``. Cheap evaluators run first and gate the expensive ones (an arch over any ``max_*`` bound is
    recorded infeasible and never evaluated).
    """

    space: str = "tiny_ldm"
    strategy: str = "bo"
    strategy_options: dict[str, Any] = {}
    eps: list[float] = [0.3]  # loss bounds of the epsilon-constraint method; the first is the default pick
    budget: int = pydantic.Field(100, gt=0)  # expensive evaluations (complete + failed trials)
    batch_size: int = pydantic.Field(1, gt=0)  # archs per ask, evaluated in parallel by the executor
    seed: int = 0
    max_gmacs: float | None = pydantic.Field(None, gt=0)
    max_params_m: float | None = pydantic.Field(None, gt=0)
    max_latency_ms: float | None = pydantic.Field(None, gt=0)
    evaluators: list[EvaluatorSpec] | None = None  # None: the default list (see the class docstring)
    objectives: list[str] = DEFAULT_OBJECTIVES
    eval_budget: int | None = pydantic.Field(None, gt=0)  # validation batches per evaluation (None = all)
    surrogates: str | None = None  # folder written by `tocsr-nas distill-blocks`
    validation: ValidationConfig = ValidationConfig()
    executor: ExecutorConfig = ExecutorConfig()

    @pydantic.field_validator("eps", mode="before")
    @classmethod
    def _eps_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, (int, float)) else value

    @pydantic.field_validator("evaluators", mode="before")
    @classmethod
    def _evaluator_names(cls, value: Any) -> Any:
        return [{"name": v} if isinstance(v, str) else v for v in value] if isinstance(value, list) else value

    @pydantic.field_validator("objectives")
    @classmethod
    def _two_objectives(cls, value: list[str]) -> list[str]:
        if len(value) != 2 or value[0] == value[1]:
            raise ValueError(f"objectives must be two distinct metrics [loss, cost], got {value}")
        return value

    @pydantic.model_validator(mode="after")
    def _evaluators_known_and_sufficient(self) -> SearchConfig:
        from evaluators import available_evaluators  # noqa: PLC0415 (imports the built-in evaluators)

        names = [spec.name for spec in self.effective_evaluators]
        known = available_evaluators()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown evaluator '{unknown[0]}' (allowed: {', '.join(known)})")
        if len(set(names)) != len(names):
            raise ValueError(f"an evaluator is listed twice: {names}")
        wants_latency = self.max_latency_ms is not None or "latency_ms" in self.objectives
        if wants_latency and "latency" not in names:
            raise ValueError("a latency objective or max_latency_ms needs the 'latency' evaluator in evaluators")
        return self

    @property
    def effective_evaluators(self) -> list[EvaluatorSpec]:
        """The evaluators this search builds, in order (the configured list or the default one)."""
        if self.evaluators is not None:
            return self.evaluators
        latency = self.max_latency_ms is not None or "latency_ms" in self.objectives
        return [EvaluatorSpec(name=n) for n in ("cost", *(["latency"] if latency else []), "distillation")]

    @property
    def constraints(self) -> dict[str, float]:
        """Upper bounds by metric name (``{"gmacs": 1.5}``) from the ``max_*`` fields that are set."""
        return {metric: getattr(self, field) for field, metric in CONSTRAINT_METRICS.items()
                if getattr(self, field) is not None}

    @pydantic.field_validator("eps")
    @classmethod
    def _eps_in_range(cls, value: list[float]) -> list[float]:
        low, high = EPS_RANGE
        for eps in value:
            if not low < eps <= high:
                raise ValueError(f"epsilon {eps} out of range ({low}, {high}] (a relative distillation loss)")
        if not value:
            raise ValueError("at least one epsilon")
        return value
