"""The configuration of one search (YAML/CLI -> a validated object)."""
from __future__ import annotations

from typing import Any, Literal

import pydantic

from ..distill.config import LatentConfig
from ..executors import ExecutorConfig

EPS_RANGE = (0.0, 10.0)  # relative distillation loss: 0 = the teacher, 1 = predicting the mean


class ValidationConfig(pydantic.BaseModel, extra="forbid"):
    """The fixed validation set of the distillation evaluator: held-out crops (never the distillation stream)."""

    latents: LatentConfig = LatentConfig(flips=False)
    count: int = pydantic.Field(32, gt=0)
    batch_size: int = pydantic.Field(8, gt=0)
    seed: int = 0


class SearchConfig(pydantic.BaseModel, extra="forbid"):
    """What to search, with which strategy, for how long, under which constraints."""

    space: str = "tiny_ldm"
    strategy: str = "bo"
    strategy_options: dict[str, Any] = {}
    eps: list[float] = [0.3]  # loss bounds of the epsilon-constraint method; the first is the default pick
    budget: int = pydantic.Field(100, gt=0)  # expensive evaluations (complete + failed trials)
    batch_size: int = pydantic.Field(1, gt=0)  # archs per ask, evaluated in parallel by the executor
    seed: int = 0
    max_gmacs: float | None = pydantic.Field(None, gt=0)
    max_params_m: float | None = pydantic.Field(None, gt=0)
    eval_budget: int | None = pydantic.Field(None, gt=0)  # validation batches per evaluation (None = all)
    surrogates: str | None = None  # folder written by `tocsr-nas distill-blocks`
    validation: ValidationConfig = ValidationConfig()
    executor: ExecutorConfig = ExecutorConfig()
    latent_size: int | None = pydantic.Field(None, gt=0)  # side of the validation latents (default: the space's)
    device: str = "auto"  # where the distillation evaluator runs (tocsr_nas.device.resolve_device)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # autocast dtype of the teacher and the students

    @pydantic.field_validator("eps", mode="before")
    @classmethod
    def _eps_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, (int, float)) else value

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
