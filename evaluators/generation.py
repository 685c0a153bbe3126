"""The ``generation`` evaluator: does the student *sample* like the teacher?

Student (the arch activated in the supernet) and teacher each run ``steps`` DDIM steps (eta 0) from the same seeded
noises and contexts (``samples`` of them, at the validation latent size); the teacher's samples are computed once.
Metrics (lower is better except ``psnr`` and ``ssim``):

* ``loss``: latent MSE / variance of the teacher's latents (relative, like the distillation loss), ``latent_mse``.
* ``psnr`` (dB, RGB in ``[0, 1]``, capped at 100 dB so that the teacher vs itself stays finite) and ``ssim`` (Y
  channel, :func:`tocsr_nas.sr.metrics.ssim_y`) of the decoded samples, when the teacher has a VAE.
* ``kid``: kernel inception distance -- the squared MMD with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3`` of Binkowski et al. (2018) -- between student and teacher sample features, with
  the *paired* unbiased U-statistic (Gretton et al. 2012, eq. 3; pairs share their noise and context), so it is
  exactly 0 for the teacher and unbiased for the 8-32 samples a search can afford (FID's bias at such counts
  exceeds the differences it should rank). The features need no downloaded weights: the per-channel mean and
  standard deviation of the middle block of the project's own VAE encoder (trained on natural images, the
  encoder the SR stages use) on the decoded samples; without a VAE, the same statistics of the latents.
  Not an Inception network: values are comparable between archs of one search, not with published KIDs.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler
from torch import nn

from tocsr_nas.arch import Arch
from tocsr_nas.distill.inputs import noise_scheduler
from tocsr_nas.errors import ConfigError
from tocsr_nas.profiling.cost_table import space_fingerprint
from tocsr_nas.sr.metrics import ssim_y
from tocsr_nas.supernet import Supernet
from tocsr_nas.teachers import Teacher
from tocsr_nas.training.sampling import ddim_latents
from tocsr_nas.vae import decode_latents

from .base import Evaluator, register_evaluator
from .context import EvaluationContext

PSNR_CAP_DB = 100.0
OPTIONS = {"samples": 8, "steps": 4, "seed": 0, "batch_size": 8}


@torch.no_grad()
def vae_features(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """``(N, 2C)``: per-channel mean and std of the VAE encoder's middle-block activations of ``images`` in [0, 1]."""
    encoder = vae.encoder
    h = encoder.conv_in(images * 2 - 1)
    for block in encoder.down_blocks:
        h = block(h)
    h = encoder.mid_block(h)
    return torch.cat([h.mean((2, 3)), h.std((2, 3))], dim=1).double()


def latent_features(latents: torch.Tensor) -> torch.Tensor:
    """``(N, 2C)``: per-channel mean and std of latents (the features without a VAE)."""
    return torch.cat([latents.mean((2, 3)), latents.std((2, 3))], dim=1).double()


def paired_kid(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased squared MMD (cubic polynomial kernel) of paired feature sets ``(N, d)``; 0 when ``x == y``."""
    n, d = x.shape
    if n < 2:
        raise ConfigError("KID needs at least 2 samples", key="evaluators.generation.samples", allowed=">= 2")
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    h = kxx + kyy - kxy - kxy.T
    return float((h.sum() - h.diagonal().sum()) / (n * (n - 1)))


def pixel_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of two images in [0, 1], capped at :data:`PSNR_CAP_DB`."""
    mse = float((a.double() - b.double()).square().mean())
    return PSNR_CAP_DB if mse <= 10 ** (-PSNR_CAP_DB / 10) else min(PSNR_CAP_DB, -10 * math.log10(mse))


class GenerationEvaluator(Evaluator):
    """Student vs teacher DDIM samples from the same noises and contexts (see the module doc)."""

    name = "generation"

    def __init__(self, supernet: Supernet, teacher: Teacher, scheduler: DDPMScheduler, *, latent_size: int,
                 samples: int = 8, steps: int = 4, seed: int = 0, batch_size: int = 8,
                 surrogates_id: str = "untrained", device: torch.device | str = "cpu") -> None:
        self.supernet, self.teacher = supernet.eval().to(device), teacher
        self.scheduler, self.steps, self.batch_size = scheduler, steps, batch_size
        self.surrogates_id, self.seed = surrogates_id, seed
        generator = torch.Generator().manual_seed(seed)
        shape = (samples, teacher.latent_channels, latent_size, latent_size)
        self.noise = torch.randn(shape, generator=generator).to(device)
        with torch.no_grad():
            self.context = teacher.context(samples, generator).detach().clone().to(device)
        self.vae: AutoencoderKL | None = teacher.vae.eval().to(device) if teacher.vae is not None else None
        self.reference = self._sample(teacher.unet.eval().to(device), self.num_batches)
        self.reference_images = self._decode(self.reference)
        self.reference_features = self._features(self.reference, self.reference_images)

    @property
    def num_batches(self) -> int:
        return -(-len(self.noise) // self.batch_size)

    def _sample(self, unet: nn.Module, batches: int) -> torch.Tensor:
        return torch.cat([ddim_latents(unet, self.scheduler, self.noise[i:i + self.batch_size],
                                      self.context[i:i + self.batch_size], self.steps)
                          for i in range(0, batches * self.batch_size, self.batch_size)])

    def _decode(self, latents: torch.Tensor) -> torch.Tensor | None:
        if self.vae is None:
            return None
        return torch.cat([decode_latents(self.vae, latents[i:i + self.batch_size])
                          for i in range(0, len(latents), self.batch_size)])

    def _features(self, latents: torch.Tensor, images: torch.Tensor | None) -> torch.Tensor:
        return latent_features(latents) if images is None else vae_features(self.vae, images)

    @torch.no_grad()
    def evaluate(self, arch: Arch, budget: int | None = None) -> dict[str, float]:
        batches = self.num_batches if budget is None else budget
        if not 1 <= batches <= self.num_batches:
            raise ConfigError(f"budget {budget} out of range", key="budget", allowed=f"1..{self.num_batches} batches")
        self.supernet.activate(arch)
        latents = self._sample(self.supernet, batches).double()
        count = len(latents)
        reference = self.reference[:count].double()
        mse = float((latents - reference).square().mean())
        metrics = {"loss": mse / float(reference.var(unbiased=False)), "latent_mse": mse}
        images = self._decode(latents.float())
        if images is not None:
            pairs = list(zip(images.cpu(), self.reference_images[:count].cpu()))
            metrics["psnr"] = sum(pixel_psnr(a, b) for a, b in pairs) / count
            metrics["ssim"] = sum(ssim_y(a, b) for a, b in pairs) / count
        metrics["kid"] = paired_kid(self._features(latents.float(), images), self.reference_features[:count])
        return metrics

    @property
    def fingerprint(self) -> str:
        text = (f"{space_fingerprint(self.supernet.space)}:{self.surrogates_id}:{tuple(self.noise.shape)}:"
                f"{self.steps}:{self.seed}:{self.batch_size}:{self.vae is not None}")
        return f"generation:{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def check_options(options: dict[str, Any], defaults: dict[str, int], evaluator: str) -> dict[str, int]:
    """``defaults`` updated by ``options``, every one a known key holding a positive integer (seed: >= 0)."""
    merged = dict(defaults)
    for key, value in options.items():
        if key not in defaults:
            raise ConfigError(f"unknown option '{key}'", key=f"evaluators.{evaluator}.options", allowed=list(defaults))
        least = 0 if key == "seed" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{value!r} must be an integer >= {least}", key=f"evaluators.{evaluator}.{key}")
        merged[key] = value
    return merged


@register_evaluator("generation")
def generation_evaluator(context: EvaluationContext, **options: Any) -> GenerationEvaluator:
    """The search's ``generation`` evaluator (options: ``samples``, ``steps``, ``seed``, ``batch_size``)."""
    merged = check_options(options, OPTIONS, "generation")
    if merged["samples"] < 2:
        raise ConfigError("KID needs at least 2 samples", key="evaluators.generation.samples", allowed=">= 2")
    validation = context.get("validation")
    return GenerationEvaluator(context.get("supernet"), context.teacher, noise_scheduler(context.space.teacher),
                               latent_size=int(validation.noisy.shape[-1]), surrogates_id=context.surrogates_id,
                               device=validation.device, **merged)
