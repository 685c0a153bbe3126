"""SR recipes for the shared training loop: SR adaptation (``sr-adapt``) and one-step distillation (``sr-onestep``).

* ``sr-adapt``: a UNet (the teacher, a compact UNet folder, or an arch extracted from the supernet) gets the LR
  latent as zero-initialised extra input channels and is fine-tuned as a residual-shifting diffusion model
  (:mod:`.shift`: the process runs from the HR to the LR latent, x0 read through the schedule, MSE on x0) on
  seeded HR/LR pairs. Exports an ``sr-diffusion`` model folder to ``out/model``.
* ``sr-onestep``: a student initialised from an ``sr-diffusion`` folder (or from an ``sr-onestep`` folder, to train
  a one-step model further under a new recipe) predicts the HR latent in one call at a fixed timestep (see
  :mod:`.pipeline`). Losses (weights in the recipe): L1/L2 to the multi-step teacher's sampled output latent
  (``teacher_steps`` steps of its own sampler) for the same LR input, to the ground-truth latent, to the HR pixels
  (through the frozen VAE, made as the ``output`` mode makes them: ``direct`` or ``residual``, see
  :func:`~.pipeline.to_pixels`), optionally LPIPS (local weight files) and a non-saturating adversarial loss from a
  small patch discriminator. Exports an ``sr-onestep`` model folder to ``out/model``.

Both run under the shared :func:`~tocsr_nas.training.loop.train` (accelerate, tqdm, safetensors checkpoints,
exact resume), so ``accelerate launch`` works unchanged.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Literal

import pydantic
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler
from torch import nn
from torch.func import functional_call

from ..compact import CompactUNet
from ..data.images import resolve_image_files
from ..degradations import make_degradation
from ..errors import ConfigError
from ..teachers import load_teacher
from ..teachers.weights import load_scheduler, weights_folder
from ..training.config import DataConfig, LoopConfig
from ..training.loop import train
from ..training.teacher_recipe import SchedulerConfig
from ..vae import encode_latents, load_vae
from .adapt import SRUNet, adapt_unet
from .data import SRPairDataset, split_pair
from .model import SRModel, load_sr_model, save_sr_model
from .pipeline import onestep_latent, to_pixels
from .shift import ShiftConfig, add_shift_noise, predict_hr_latent, sample_latent

log = logging.getLogger(__name__)

MODEL_DIR = "model"


class BackboneConfig(pydantic.BaseModel, extra="forbid"):
    """The UNet to adapt: the teacher itself, a compact UNet folder, or an arch of ``space`` over the teacher."""

    teacher: str = "tiny-ldm"
    compact: str | None = None
    arch: str | None = None
    space: str = "tiny_ldm"


class SRAdaptRecipe(pydantic.BaseModel, extra="forbid"):
    """An ``sr_adapt.yaml`` file."""

    recipe: Literal["sr-adapt"] = "sr-adapt"
    backbone: BackboneConfig = BackboneConfig()
    vae: str | None = None  # VAE folder; default: the teacher's shipped VAE
    scale: Literal[2, 3, 4] = 4
    degradation: str | dict[str, Any] = "bicubic"
    data: DataConfig = DataConfig()
    loop: LoopConfig
    scheduler: SchedulerConfig | None = None  # default: the teacher's training schedule (or the DDPM default)
    output: Literal["direct", "residual"] = "residual"  # pixels from the latent at inference (see .pipeline)
    shift: ShiftConfig = ShiftConfig()  # the residual-shifting process, trained and sampled (see .shift)


class OneStepLoss(pydantic.BaseModel, extra="forbid"):
    """Loss weights of the one-step student (0 disables a term)."""

    teacher_l1: float = pydantic.Field(0.0, ge=0)
    teacher_l2: float = pydantic.Field(1.0, ge=0)
    latent_l1: float = pydantic.Field(0.0, ge=0)
    latent_l2: float = pydantic.Field(1.0, ge=0)
    pixel_l1: float = pydantic.Field(1.0, ge=0)
    pixel_l2: float = pydantic.Field(0.0, ge=0)
    lpips: float = pydantic.Field(0.0, ge=0)
    lpips_backbone: str | None = None  # local AlexNet features weights (needed when lpips > 0)
    lpips_linear: str | None = None  # local LPIPS linear-layer weights (needed when lpips > 0)
    adversarial: float = pydantic.Field(0.0, ge=0)
    disc_channels: int = pydantic.Field(32, gt=0)


class SROneStepRecipe(pydantic.BaseModel, extra="forbid"):
    """An ``sr_onestep.yaml`` file."""

    recipe: Literal["sr-onestep"] = "sr-onestep"
    init: str | None = None  # sr-diffusion folder (the student's init and multi-step teacher) or sr-onestep folder
    timestep: int = pydantic.Field(200, ge=0)
    teacher_steps: int = pydantic.Field(20, gt=0)  # sampling steps of the teacher's targets
    output: Literal["direct", "residual"] = "residual"  # pixels from the latent (pixel losses and inference)
    degradation: str | dict[str, Any] = "bicubic"
    data: DataConfig = DataConfig()
    loop: LoopConfig
    loss: OneStepLoss = OneStepLoss()


def build_backbone(config: BackboneConfig) -> tuple[nn.Module, torch.Tensor, Any]:
    """``(unet, context (L, D), teacher)`` for a backbone config."""
    teacher = load_teacher(config.teacher)
    if config.compact is not None and config.arch is not None:
        raise ConfigError("give either backbone.compact or backbone.arch, not both", key="backbone")
    unet: nn.Module = teacher.unet
    if config.compact is not None:
        unet = CompactUNet.from_pretrained(config.compact)
    elif config.arch is not None:
        import search_spaces  # noqa: PLC0415 (only needed for an arch backbone)

        from ..supernet import Supernet  # noqa: PLC0415

        space = search_spaces.load(config.space)
        try:
            arch = space.parse(config.arch)
        except ValueError as err:
            raise ConfigError(f"invalid arch ({err})", key="backbone.arch") from None
        unet = Supernet(teacher, space).extract(arch)
    with torch.no_grad():
        context = teacher.context(1).detach()[0]
    return unet, context, teacher


def _scheduler(recipe: SRAdaptRecipe) -> DDPMScheduler:
    if recipe.scheduler is not None:
        return recipe.scheduler.build()
    folder = weights_folder(recipe.backbone.teacher)
    if folder is not None and folder.is_dir():
        return load_scheduler(folder)
    return SchedulerConfig().build()


class SRDiffusionTask:
    """The residual-shifting objective (:mod:`.shift`): MSE of the predicted HR latent at a uniform step."""

    def __init__(self, net: SRUNet, vae: AutoencoderKL, scheduler: DDPMScheduler, shift: ShiftConfig) -> None:
        self.model: nn.Module = net
        self.vae, self.scheduler, self.shift = vae.eval().requires_grad_(False), scheduler, shift
        self.frozen: tuple[nn.Module, ...] = (self.vae,)

    def loss(self, model: nn.Module, batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """x0 MSE of one batch of ``HR ++ upsampled LR`` pairs."""
        hr, lr_up = split_pair(batch)
        hr_latent, lr_latent = encode_latents(self.vae, hr), encode_latents(self.vae, lr_up)
        noise = torch.randn(hr_latent.shape, generator=generator).to(hr_latent.device)
        index = torch.randint(0, self.shift.steps, (len(hr),), generator=generator).to(hr.device)
        sample = add_shift_noise(self.shift, hr_latent, lr_latent, noise, index)
        loss = F.mse_loss(predict_hr_latent(model, self.shift, self.scheduler, sample, lr_latent, index), hr_latent)
        return loss, {"loss": loss.item()}


def run_sr_adapt(recipe: SRAdaptRecipe, out_dir: str | Path, *, resume: bool = True,
                 stop_after: int | None = None, export_at: int | None = None) -> dict[str, Any]:
    """Adapt and fine-tune; when finished (or at step ``export_at``), export ``out_dir/model`` (kind ``sr-diffusion``).

    ``export_at`` stops the run early and exports the weights of that step, the learning rate partway through
    the recipe's schedule (a rerun with the same ``export_at`` gives the same model).
    """
    out_dir = Path(out_dir)
    torch.manual_seed(recipe.loop.seed)  # diffusers and supernet ops initialise from the global generator
    unet, context, teacher = build_backbone(recipe.backbone)
    vae = load_vae(recipe.vae) if recipe.vae is not None else teacher.vae
    if vae is None:
        raise ConfigError("no VAE: give vae: (a VAE folder) or a teacher with shipped weights", key="vae")
    scheduler = _scheduler(recipe)
    degradation = make_degradation(recipe.degradation, scale=recipe.scale)
    loop = recipe.loop
    dataset = SRPairDataset(resolve_image_files(recipe.data.source), recipe.data.crop_size,
                            loop.steps * loop.batch_size, degradation, loop.seed, recipe.data.flips)
    net = adapt_unet(unet, context)
    task = SRDiffusionTask(net, vae, scheduler, recipe.shift)
    result = train(task, dataset, loop, out_dir, resume=resume, stop_after=export_at or stop_after)
    summary: dict[str, Any] = {"recipe": "sr-adapt", "steps": result.step, "resumed_from": result.resumed_from,
                               "wall_s": result.wall_s, "final": result.history[-1] if result.history else {}}
    if result.step >= min(loop.steps, export_at or loop.steps):
        info = {"recipe": recipe.model_dump(), "steps": result.step, "degradation": str(recipe.degradation)}
        model = SRModel(net=result.model, vae=vae, scheduler=scheduler, kind="sr-diffusion", scale=recipe.scale,
                        shift=recipe.shift, output=recipe.output, info=info)
        summary["model"] = str(save_sr_model(model, out_dir / MODEL_DIR))
    return summary


class PatchDiscriminator(nn.Module):
    """A small PatchGAN: strided convs to a map of real/fake logits (input in ``[-1, 1]``)."""

    def __init__(self, channels: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for out in (channels, channels * 2, channels * 4):
            layers += [nn.Conv2d(width, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            width = out
        layers.append(nn.Conv2d(width, 1, 3, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


class OneStepModel(nn.Module):
    """The trainable modules of one-step distillation: the student and (optionally) the discriminator."""

    def __init__(self, student: SRUNet, discriminator: PatchDiscriminator | None) -> None:
        super().__init__()
        self.student = student
        self.discriminator = discriminator


class OneStepTask:
    """The one-step student's weighted losses (see the module doc)."""

    def __init__(self, teacher: SRModel, timestep: int, teacher_steps: int, weights: OneStepLoss,
                 lpips: nn.Module | None = None, output: str = "residual") -> None:
        if weights.adversarial > 0:
            torch.manual_seed(0)  # the discriminator's init
        disc = PatchDiscriminator(weights.disc_channels) if weights.adversarial > 0 else None
        self.model: nn.Module = OneStepModel(copy.deepcopy(teacher.net).train(), disc)
        self.teacher = teacher.net.eval().requires_grad_(False)
        self.vae = teacher.vae.eval().requires_grad_(False)
        self.scheduler, self.timestep, self.teacher_steps = teacher.scheduler, timestep, teacher_steps
        self.shift = teacher.shift
        self.weights, self.lpips, self.output = weights, lpips, output
        self.frozen: tuple[nn.Module, ...] = tuple(m for m in (self.teacher, self.vae, lpips) if m is not None)

    def loss(self, model: nn.Module, batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted sum of the enabled terms (and the discriminator's own loss) for one batch."""
        model = getattr(model, "module", model)  # unwrap DDP under accelerate launch
        w = self.weights
        hr, lr_up = split_pair(batch)
        hr_latent, lr_latent = encode_latents(self.vae, hr), encode_latents(self.vae, lr_up)
        latent = onestep_latent(model.student, self.scheduler, self.timestep, lr_latent)
        terms: dict[str, tuple[float, torch.Tensor]] = {}
        if w.teacher_l1 or w.teacher_l2:
            noise = torch.randn(lr_latent.shape, generator=generator).to(lr_latent.device)
            target = sample_latent(self.teacher, self.shift, self.scheduler, lr_latent, self.teacher_steps, noise)
            terms["teacher_l1"] = (w.teacher_l1, (latent - target).abs().mean())
            terms["teacher_l2"] = (w.teacher_l2, (latent - target).square().mean())
        terms["latent_l1"] = (w.latent_l1, (latent - hr_latent).abs().mean())
        terms["latent_l2"] = (w.latent_l2, (latent - hr_latent).square().mean())
        if w.pixel_l1 or w.pixel_l2 or w.lpips or w.adversarial:
            image = to_pixels(self.vae, latent, lr_latent, lr_up, self.output)
            terms["pixel_l1"] = (w.pixel_l1, (image - hr).abs().mean())
            terms["pixel_l2"] = (w.pixel_l2, (image - hr).square().mean())
            if w.lpips:
                terms["lpips"] = (w.lpips, self.lpips(image, hr).mean())
            if w.adversarial:
                disc = model.discriminator
                frozen = {k: v.detach() for k, v in disc.named_parameters()}
                fake_logits = functional_call(disc, frozen, (image * 2 - 1,))
                terms["adv_g"] = (w.adversarial, F.softplus(-fake_logits).mean())
                d_loss = (F.softplus(-disc(hr * 2 - 1)).mean() + F.softplus(disc(image.detach() * 2 - 1)).mean())
                terms["adv_d"] = (1.0, d_loss)
        total = sum(weight * value for weight, value in terms.values() if weight)
        metrics = {name: float(value.detach()) for name, (weight, value) in terms.items() if weight}
        metrics["loss"] = float(total.detach())
        return total, metrics


def _require_compatible_init(recipe: SROneStepRecipe, init: SRModel) -> None:
    """The init gives what the recipe asks: teacher targets need an sr-diffusion model it can sample, and an
    ``sr-onestep`` init (trained further) keeps its timestep."""
    if recipe.loss.teacher_l1 or recipe.loss.teacher_l2:
        if init.kind == "sr-onestep":
            raise ConfigError("an sr-onestep init gives no multi-step teacher targets: set loss.teacher_l1 = "
                              "loss.teacher_l2 = 0, or start from an sr-diffusion model", source=recipe.init,
                              key="loss")
        if init.shift is None:
            raise ConfigError("teacher targets need an sr-diffusion model with a residual-shifting schedule; this "
                              "one predates it: retrain it, or set loss.teacher_l1 = loss.teacher_l2 = 0", key="init")
    if init.kind == "sr-onestep" and recipe.timestep != init.timestep:
        raise ConfigError(f"the sr-onestep init predicts at timestep {init.timestep}, the recipe says "
                          f"{recipe.timestep}", source=recipe.init, key="timestep", allowed=[init.timestep])


def run_sr_onestep(recipe: SROneStepRecipe, out_dir: str | Path, *, resume: bool = True,
                   stop_after: int | None = None, export_at: int | None = None) -> dict[str, Any]:
    """Distil; when finished (or at step ``export_at``, see :func:`run_sr_adapt`), export ``out_dir/model``."""
    out_dir = Path(out_dir)
    if recipe.init is None:
        raise ConfigError("no model to start from (an sr-diffusion or sr-onestep folder): set init (or --init)",
                          key="init")
    teacher = load_sr_model(recipe.init)
    num_steps = int(teacher.scheduler.config.num_train_timesteps)
    if recipe.timestep >= num_steps:
        raise ConfigError(f"timestep {recipe.timestep} out of range", key="timestep", allowed=f"0..{num_steps - 1}")
    _require_compatible_init(recipe, teacher)
    lpips = None
    if recipe.loss.lpips > 0:
        from .metrics import load_lpips  # noqa: PLC0415 (only with local weight files)

        if recipe.loss.lpips_backbone is None or recipe.loss.lpips_linear is None:
            raise ConfigError("lpips > 0 needs local weight files", key="loss.lpips_backbone")
        lpips = load_lpips(recipe.loss.lpips_backbone, recipe.loss.lpips_linear).requires_grad_(False)
    degradation = make_degradation(recipe.degradation, scale=teacher.scale)
    loop = recipe.loop
    dataset = SRPairDataset(resolve_image_files(recipe.data.source), recipe.data.crop_size,
                            loop.steps * loop.batch_size, degradation, loop.seed, recipe.data.flips)
    task = OneStepTask(teacher, recipe.timestep, recipe.teacher_steps, recipe.loss, lpips, recipe.output)
    result = train(task, dataset, loop, out_dir, resume=resume, stop_after=export_at or stop_after)
    summary: dict[str, Any] = {"recipe": "sr-onestep", "steps": result.step, "resumed_from": result.resumed_from,
                               "wall_s": result.wall_s, "final": result.history[-1] if result.history else {}}
    if result.step >= min(loop.steps, export_at or loop.steps):
        # the init's own info nests, so a model trained in stages keeps every stage's recipe
        info = {"recipe": recipe.model_dump(), "steps": result.step, "init": str(recipe.init), "init_info": teacher.info}
        model = SRModel(net=result.model.student, vae=teacher.vae, scheduler=teacher.scheduler, kind="sr-onestep",
                        scale=teacher.scale, timestep=recipe.timestep, output=recipe.output, info=info)
        summary["model"] = str(save_sr_model(model, out_dir / MODEL_DIR))
    return summary


__all__ = ["BackboneConfig", "OneStepLoss", "OneStepTask", "PatchDiscriminator", "SRAdaptRecipe",
           "SRDiffusionTask", "SROneStepRecipe", "build_backbone", "run_sr_adapt", "run_sr_onestep"]
