"""Recipe configs shared by the training recipes (validated from YAML)."""
from __future__ import annotations

from typing import Literal

import pydantic

from ..data.images import BUILTIN


class DataConfig(pydantic.BaseModel, extra="forbid"):
    """Where training crops come from: ``builtin`` (scikit-image's photographs) or an image folder."""

    source: str = BUILTIN
    crop_size: int = pydantic.Field(128, gt=0)
    flips: bool = True


class LoopConfig(pydantic.BaseModel, extra="forbid"):
    """Optimisation and bookkeeping of one training run."""

    steps: int = pydantic.Field(gt=0)
    batch_size: int = pydantic.Field(gt=0)
    lr: float = pydantic.Field(gt=0)
    min_lr_ratio: float = pydantic.Field(0.1, ge=0, le=1)  # cosine decay ends at lr * min_lr_ratio
    warmup_steps: int = pydantic.Field(0, ge=0)
    weight_decay: float = pydantic.Field(0.0, ge=0)
    grad_clip: float | None = pydantic.Field(1.0, gt=0)
    ema_decay: float | None = pydantic.Field(None, gt=0, lt=1)
    checkpoint_every: int = pydantic.Field(200, gt=0)
    keep_checkpoints: int = pydantic.Field(2, gt=0)
    log_every: int = pydantic.Field(50, gt=0)
    seed: int = 0
    num_threads: int = pydantic.Field(2, gt=0)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (tocsr_nas.device.resolve_device); never a silent fallback
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # the loss runs under autocast; weights stay fp32
