"""Recipe ``teacher``: train a teacher UNet and its learned context as a latent diffusion model.

Crops are encoded by a frozen, trained VAE (a posterior sample times its ``scaling_factor``); the UNet
predicts the noise added by a ``DDPMScheduler`` (epsilon prediction, MSE loss).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import pydantic
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler
from torch import nn

from ..data.images import BUILTIN, ImageCropDataset, resolve_image_files
from ..teachers import Teacher
from ..teachers.weights import save_teacher_weights, untrained_teacher
from ..vae import encode_latents, load_vae
from .config import DataConfig, LoopConfig
from .evaluate import denoising_loss
from .loop import train

log = logging.getLogger(__name__)


class SchedulerConfig(pydantic.BaseModel, extra="forbid"):
    """The ``DDPMScheduler`` noise schedule (epsilon prediction)."""

    num_train_timesteps: int = pydantic.Field(1000, gt=0)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "scaled_linear"
    beta_start: float = pydantic.Field(0.00085, gt=0)
    beta_end: float = pydantic.Field(0.012, gt=0)

    def build(self) -> DDPMScheduler:
        """The scheduler."""
        return DDPMScheduler(**self.model_dump(), prediction_type="epsilon", clip_sample=False)


class TeacherRecipe(pydantic.BaseModel, extra="forbid"):
    """A ``train_teacher.yaml`` file."""

    recipe: Literal["teacher"] = "teacher"
    teacher: str = "tiny-ldm"
    vae: str  # trained VAE folder (vae.json + vae.safetensors)
    data: DataConfig = DataConfig()
    loop: LoopConfig
    scheduler: SchedulerConfig = SchedulerConfig()
    held_out_source: str = BUILTIN  # images for the held-out denoising loss
    held_out_crops: int = pydantic.Field(32, gt=0)


class TeacherModel(nn.Module):
    """The trainable parts of a teacher: UNet and learned context."""

    def __init__(self, teacher: Teacher) -> None:
        super().__init__()
        self.unet, self.context = teacher.unet, teacher.context


class DiffusionTask:
    """Epsilon-prediction loss on VAE latents of a batch of crops."""

    def __init__(self, teacher: Teacher, vae: AutoencoderKL, scheduler: DDPMScheduler) -> None:
        self.model: nn.Module = TeacherModel(teacher)
        self.vae, self.scheduler = vae.eval().requires_grad_(False), scheduler
        self.frozen: tuple[nn.Module, ...] = (self.vae,)

    def loss(self, model: nn.Module, batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Denoising MSE of one batch (noise, timesteps and posterior samples drawn from ``generator``)."""
        latents = encode_latents(self.vae, batch, generator)
        noise = torch.randn(latents.shape, generator=generator).to(latents.device)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(batch),),
                                  generator=generator).to(latents.device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        prediction = model.unet(noisy, timesteps, encoder_hidden_states=model.context(len(batch))).sample
        loss = F.mse_loss(prediction, noise)
        return loss, {"loss": loss.item()}


def held_out_latents(vae: AutoencoderKL, source: str, crop_size: int, count: int, seed: int = 12345) -> torch.Tensor:
    """Posterior-mean latents of ``count`` seeded crops (no flips) from ``source``."""
    dataset = ImageCropDataset(resolve_image_files(source), crop_size, count, seed=seed, flips=False)
    return torch.cat([encode_latents(vae, torch.stack([dataset[i] for i in range(s, min(count, s + 8))]))
                      for s in range(0, count, 8)])


def run_teacher_recipe(recipe: TeacherRecipe, out_dir: str | Path, *, resume: bool = True,
                       stop_after: int | None = None) -> dict[str, Any]:
    """Train the teacher; when finished, export ``out_dir/weights`` (fp16) and report held-out losses."""
    out_dir = Path(out_dir)
    loop = recipe.loop
    vae = load_vae(recipe.vae)
    scheduler = recipe.scheduler.build()
    dataset = ImageCropDataset(resolve_image_files(recipe.data.source), recipe.data.crop_size,
                               loop.steps * loop.batch_size, loop.seed, recipe.data.flips)
    teacher = untrained_teacher(recipe.teacher, seed=loop.seed)
    result = train(DiffusionTask(teacher, vae, scheduler), dataset, loop, out_dir, resume=resume, stop_after=stop_after)
    summary: dict[str, Any] = {"recipe": "teacher", "steps": result.step, "resumed_from": result.resumed_from,
                               "wall_s": result.wall_s, "final": result.history[-1] if result.history else {}}
    if result.step < loop.steps:
        return summary
    trained = Teacher(name=teacher.name, unet=result.model.unet, context=result.model.context,
                      latent_size=teacher.latent_size, vae=vae)
    latents = held_out_latents(vae, recipe.held_out_source, recipe.data.crop_size, recipe.held_out_crops)
    random_init = untrained_teacher(recipe.teacher, seed=loop.seed)
    summary["held_out"] = {
        "source": recipe.held_out_source, "crops": recipe.held_out_crops,
        "trained": denoising_loss(trained, latents, scheduler),
        "random_init": denoising_loss(random_init, latents, scheduler),
        "predict_zero": float(held_out_zero_baseline(latents, scheduler)),
        "latent_std": float(latents.std()),
    }
    info = {"steps": result.step, "final_train_loss": summary["final"].get("loss", math.nan),
            "held_out": summary["held_out"]}
    save_teacher_weights(out_dir / "weights", trained.unet, trained.context, vae, scheduler, info=info)
    log.info("exported weights to %s", out_dir / "weights")
    return summary


def held_out_zero_baseline(latents: torch.Tensor, scheduler: DDPMScheduler, seed: int = 0) -> float:
    """The held-out loss of a model that always predicts zero noise (the seeded noise's mean square)."""
    generator = torch.Generator().manual_seed(seed)
    return float(torch.randn(latents.shape, generator=generator).square().mean())
