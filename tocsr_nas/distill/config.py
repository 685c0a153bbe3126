"""The distillation config (``experiments/recipes/distill_blocks.yaml``) and its hash."""
from __future__ import annotations

import hashlib
import json
from typing import Literal

import pydantic

from ..data.images import BUILTIN
from ..executors import ExecutorConfig

# Fields that do not change what a candidate learns; they are left out of the config hash.
# (space and teacher are checked by their own fingerprints in the surrogate folder.)
# (dtype stays in: the teacher's precision changes its features. Grouping and checkpointing do not change results.)
_BOOKKEEPING = frozenset({"space", "teacher", "executor", "checkpoint_every", "num_threads", "cache_dir", "device",
                          "max_memory_gb", "offload_activations", "gradient_checkpointing"})


class TimestepConfig(pydantic.BaseModel, extra="forbid"):
    """The distribution of the diffusion timesteps at which the teacher is captured."""

    distribution: Literal["uniform", "logit_normal"] = "uniform"
    min: int = pydantic.Field(0, ge=0)
    max: int = pydantic.Field(999, ge=0)
    mean: float = 0.0  # logit_normal: location of the normal before the sigmoid
    std: float = pydantic.Field(1.0, gt=0)

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> TimestepConfig:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) < min ({self.min})")
        return self


class LatentConfig(pydantic.BaseModel, extra="forbid"):
    """Where clean latents come from.

    ``auto``: the teacher's VAE on image crops when it has one, else ``vae`` if a folder is given, else
    ``gaussian`` (a stand-in for untrained teachers: unit-variance noise as "clean" latents, with a warning).
    ``file``: pre-encoded latents, a safetensors file with a ``latents`` tensor ``(N, C, H, W)``.
    """

    source: Literal["auto", "vae", "file", "gaussian"] = "auto"
    images: str = BUILTIN  # image folder, or "builtin" (scikit-image's photographs)
    vae: str | None = None  # VAE folder (vae.json + vae.safetensors); default: the teacher's
    file: str | None = None
    flips: bool = True


class DistillConfig(pydantic.BaseModel, extra="forbid"):
    """Feature-wise distillation of every candidate of a search space from its teacher unit.

    The defaults (150 steps x batch 2) train all 196 candidates of ``tiny_ldm`` in under 10 minutes on a
    2-core CPU (``benchmarks/results/distill_blocks.md``).
    """

    space: str = "tiny_ldm"
    teacher: str | None = None  # default: the space's teacher
    steps: int = pydantic.Field(150, gt=0)
    batch_size: int = pydantic.Field(2, gt=0)
    lr: float = pydantic.Field(3e-3, gt=0)
    min_lr_ratio: float = pydantic.Field(0.1, ge=0, le=1)
    warmup_steps: int = pydantic.Field(5, ge=0)
    grad_clip: float | None = pydantic.Field(1.0, gt=0)
    loss: Literal["mse", "channel_mse"] = "mse"
    mode: Literal["teacher-input", "student-input"] = "teacher-input"
    student_arch: str | None = None  # student-input: the arch whose units feed the candidates
    student_surrogates: str | None = None  # student-input: a surrogate folder to take the student's weights from
    timesteps: TimestepConfig = TimestepConfig()
    latents: LatentConfig = LatentConfig()
    held_out_samples: int = pydantic.Field(8, gt=0)
    seed: int = 0
    checkpoint_every: int = pydantic.Field(50, gt=0)
    num_threads: int = pydantic.Field(1, gt=0)  # more threads thrash when other processes share the cores
    cache_dir: str | None = None  # optional on-disk cache of teacher activations (teacher-input mode)
    executor: ExecutorConfig = ExecutorConfig()
    latent_size: int | None = pydantic.Field(None, gt=0)  # side of the training latents (default: the space's)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (tocsr_nas.device.resolve_device)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # the teacher's autocast dtype; candidates stay fp32
    max_memory_gb: float | None = pydantic.Field(None, gt=0)  # plan unit groups so one step fits (None: one group)
    offload_activations: bool = False  # keep captured unit inputs/outputs on the CPU between uses
    gradient_checkpointing: bool = False  # recompute candidate activations in backward (big candidates)

    @pydantic.model_validator(mode="after")
    def _student(self) -> DistillConfig:
        if self.mode == "student-input" and self.student_arch is None:
            raise ValueError("student-input mode needs student_arch")
        return self

    def fingerprint(self) -> str:
        """A hash of everything that changes what the candidates learn."""
        data = self.model_dump(exclude=set(_BOOKKEEPING))
        return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


__all__ = ["DistillConfig", "ExecutorConfig", "LatentConfig", "TimestepConfig"]
