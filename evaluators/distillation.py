"""The ``distillation`` evaluator: how closely a student arch reproduces the teacher's noise prediction.

A fixed validation set of noisy latents (real-image latents + seeded noise at seeded timesteps, with the teacher's
context) is built once, and the teacher's outputs on it are computed once. An arch is scored by activating it in
the supernet (whose candidates carry the distilled surrogate weights) and comparing its outputs with the cached
teacher outputs: ``mse`` and ``loss`` = mse / variance of the teacher outputs (the *relative* error; 0 = the
teacher, 1 = as bad as predicting the mean). ``budget`` = how many validation batches to use (default all).
"""
from __future__ import annotations

import dataclasses
import hashlib

import torch
from diffusers import DDPMScheduler

from tocsr_nas.arch import Arch
from tocsr_nas.errors import ConfigError
from tocsr_nas.profiling.cost_table import space_fingerprint
from tocsr_nas.supernet import Supernet
from tocsr_nas.teachers import Teacher

from .base import Evaluator, register_evaluator
from .context import EvaluationContext


@dataclasses.dataclass
class ValidationSet:
    """Fixed inputs ``(noisy, timesteps, context)`` and the teacher's outputs on them."""

    noisy: torch.Tensor
    timesteps: torch.Tensor
    context: torch.Tensor
    target: torch.Tensor
    batch_size: int
    seed: int

    @classmethod
    @torch.no_grad()
    def build(cls, teacher: Teacher, latents: torch.Tensor, *, batch_size: int = 8, seed: int = 0,
              scheduler: DDPMScheduler | None = None) -> ValidationSet:
        """Noise ``latents`` (N, C, H, W) at uniformly drawn timesteps and record the teacher's outputs."""
        if latents.dim() != 4 or latents.shape[1] != teacher.latent_channels:
            raise ConfigError(f"validation latents must be (N, {teacher.latent_channels}, H, W), got {tuple(latents.shape)}")
        scheduler = scheduler or DDPMScheduler(num_train_timesteps=1000)
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        context = teacher.context(len(latents), generator).detach().clone()
        teacher.unet.eval()
        target = torch.cat([teacher.unet(noisy[i:i + batch_size], timesteps[i:i + batch_size],
                                         encoder_hidden_states=context[i:i + batch_size]).sample
                            for i in range(0, len(latents), batch_size)])
        return cls(noisy, timesteps, context, target, batch_size, seed)

    @property
    def num_batches(self) -> int:
        return -(-len(self.noisy) // self.batch_size)


class DistillationEvaluator(Evaluator):
    """Relative distillation loss of the arch's student vs the teacher on a fixed validation set."""

    name = "distillation"

    def __init__(self, supernet: Supernet, validation: ValidationSet, *, surrogates_id: str = "untrained") -> None:
        self.supernet, self.validation, self.surrogates_id = supernet.eval(), validation, surrogates_id

    @torch.no_grad()
    def evaluate(self, arch: Arch, budget: int | None = None) -> dict[str, float]:
        data = self.validation
        batches = data.num_batches if budget is None else budget
        if not 1 <= batches <= data.num_batches:
            raise ConfigError(f"budget {budget} out of range", key="budget", allowed=f"1..{data.num_batches} batches")
        self.supernet.activate(arch)
        squared_error, target_sq, target_sum, count = 0.0, 0.0, 0.0, 0
        for b in range(batches):
            part = slice(b * data.batch_size, (b + 1) * data.batch_size)
            output = self.supernet(data.noisy[part], data.timesteps[part], encoder_hidden_states=data.context[part]).sample
            target = data.target[part].double()
            squared_error += float(((output.double() - target) ** 2).sum())
            target_sq += float((target ** 2).sum())
            target_sum += float(target.sum())
            count += target.numel()
        mse = squared_error / count
        variance = target_sq / count - (target_sum / count) ** 2
        return {"loss": mse / variance, "mse": mse}

    @property
    def fingerprint(self) -> str:
        v = self.validation
        text = f"{space_fingerprint(self.supernet.space)}:{self.surrogates_id}:{len(v.noisy)}:{v.batch_size}:{v.seed}"
        return f"distillation:{hashlib.sha1(text.encode()).hexdigest()[:12]}"


@register_evaluator("distillation")
def distillation_evaluator(context: EvaluationContext) -> DistillationEvaluator:
    """The search's ``distillation`` evaluator: its supernet (with the trained surrogates) and validation set."""
    return DistillationEvaluator(context.get("supernet"), context.get("validation"),
                                 surrogates_id=context.surrogates_id)
