"""Recipe ``expand``: a 4-channel teacher (UNet + VAE) becomes a wider-latent (16-channel) teacher.

1. VAE: :func:`~tocsr_nas.expansion.expand_vae` (equal to the old VAE at init), trained by L1/L2 reconstruction
   losses on real crops and a small KL term, plus distillation from the old VAE on the old subspace: the new
   latent's first channels are pulled to the old latent, and decoding them alone (extra channels zero) is pulled to
   the old VAE's reconstruction and decoder mid-block features. The full latent's decode answers only to the real
   image: distilling it too would cap the 16-channel VAE at the 4-channel one's quality, while the subspace terms
   keep the old look as what the first channels decode to and let the extra channels add the detail. The old
   latent scaling factor is kept, so the new latent's first channels stay the old (scaled) latent, which the
   widened UNet already denoises.
2. UNet: :func:`~tocsr_nas.expansion.widen_unet` (reproduces the old UNet on the old subspace at init), then
   fine-tuned with the teacher recipe's denoising loss on the new VAE's latents.
3. Export: ``out/teacher.yaml`` + ``out/weights/`` (a teacher folder: ``--teacher out``), whose manifest names the
   source teacher and the recipe.

Both stages use the shared training loop (accelerate, checkpoints under ``out/vae`` and ``out/unet``), so an
interrupted expansion resumes where it stopped.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import pydantic
import torch
import yaml
from diffusers import AutoencoderKL, DDPMScheduler
from torch import nn

from ..atomic import write_text
from ..data.images import BUILTIN, ImageCropDataset, resolve_image_files
from ..errors import ConfigError
from ..expansion import expand_vae, widen_unet
from ..teachers import TEACHER_FILE, LearnedContext, Teacher, load_teacher
from ..teachers.weights import load_scheduler, save_teacher_weights, weights_folder
from .config import DataConfig, LoopConfig
from .evaluate import denoising_loss
from .loop import train
from .teacher_recipe import DiffusionTask, SchedulerConfig, held_out_latents

log = logging.getLogger(__name__)


class ExpandVaeLoss(pydantic.BaseModel, extra="forbid"):
    """Loss weights of the VAE stage (pixels in ``[0, 1]``; distillation targets from the old VAE)."""

    l1: float = pydantic.Field(1.0, ge=0)
    l2: float = pydantic.Field(1.0, ge=0)
    kl: float = pydantic.Field(1e-5, ge=0)
    distill: float = pydantic.Field(1.0, ge=0)  # L2 of the old-subspace decode to the old VAE's reconstruction
    latent: float = pydantic.Field(1.0, ge=0)  # L2 of the new latent's first channels to the old latent (posterior means)
    features: float = pydantic.Field(0.1, ge=0)  # L2 of the old-subspace decode's mid-block features to the old's


class ExpandRecipe(pydantic.BaseModel, extra="forbid"):
    """An ``expand_*.yaml`` file."""

    recipe: Literal["expand"] = "expand"
    teacher: str  # the 4-channel source: a teacher name, a config file with weights, or a folder
    channels: int = pydantic.Field(16, gt=0)
    data: DataConfig = DataConfig()
    unet_data: DataConfig | None = None  # crops for the UNet stage; ``data`` by default
    vae_loop: LoopConfig
    vae_loss: ExpandVaeLoss = ExpandVaeLoss()
    unet_loop: LoopConfig
    scheduler: SchedulerConfig = SchedulerConfig()  # used when the source ships no scheduler.json
    held_out_source: str = BUILTIN
    held_out_crops: int = pydantic.Field(16, gt=0)


def load_source(spec: str, channels: int) -> tuple[Teacher, DDPMScheduler | None]:
    """The source teacher with its VAE (and its training noise schedule if it ships one), checked for expansion.

    A teacher without a VAE, a VAE whose latent differs from the UNet's channels, or one already ``channels`` wide
    is a one-line ``ConfigError``.
    """
    teacher = load_teacher(spec)
    folder = Path(spec)
    scheduler = None
    if teacher.vae is None and (folder / "vae" / "config.json").is_file():  # a diffusers pipeline folder
        teacher.vae = AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True).eval()
        if (folder / "scheduler" / "scheduler_config.json").is_file():
            scheduler = DDPMScheduler.from_pretrained(folder / "scheduler", local_files_only=True)
    if teacher.vae is None:
        raise ConfigError("the teacher has no VAE to expand (give a config with weights: or a folder with vae/)",
                          source=spec, key="teacher")
    unet = teacher.unet.config
    latent = int(teacher.vae.config.latent_channels)
    if latent != int(unet.in_channels) or latent != int(unet.out_channels):
        raise ConfigError(f"VAE latent has {latent} channels, the UNet {unet.in_channels} in / {unet.out_channels} "
                          "out", source=spec, key="teacher")
    if not isinstance(teacher.context, LearnedContext):
        raise ConfigError("only a teacher with a learned context can be expanded", source=spec, key="context")
    if latent >= channels:
        raise ConfigError(f"the teacher already has a {latent}-channel latent (expanding to {channels})",
                          source=spec, key="channels")
    weights = weights_folder(spec)
    if scheduler is None and weights is not None and (weights / "scheduler.json").is_file():
        scheduler = load_scheduler(weights)
    return teacher, scheduler


class ExpandVaeTask:
    """Train the expanded VAE against real crops and, on the old subspace, the frozen old VAE (module docstring)."""

    def __init__(self, student: AutoencoderKL, old: AutoencoderKL, weights: ExpandVaeLoss) -> None:
        self.model: nn.Module = student
        self.old = old.eval().requires_grad_(False)
        self.frozen: tuple[nn.Module, ...] = (self.old,)
        self.weights = weights
        self.channels = int(old.config.latent_channels)

    def loss(self, model: nn.Module, batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction + distillation + KL loss of one batch."""
        images = batch * 2 - 1
        with torch.no_grad():
            old_mean = self.old.encode(images).latent_dist.mean
            old_recon, old_features = _decode_with_features(self.old, old_mean)
        posterior = model.encode(images).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator).to(batch.device)
        recon01 = (model.decode(posterior.mean + posterior.std * noise).sample + 1) / 2
        terms = {
            "l1": (recon01 - batch).abs().mean(),
            "l2": (recon01 - batch).square().mean(),
            "kl": posterior.kl().mean() / posterior.mean[0].numel(),
            "latent": (posterior.mean[:, :self.channels] - old_mean).square().mean(),
        }
        if self.weights.distill or self.weights.features:
            first = posterior.mean[:, :self.channels]
            subspace = torch.cat([first, first.new_zeros(first.shape[0], model.config.latent_channels - self.channels,
                                                         *first.shape[2:])], 1)
            sub_recon, sub_features = _decode_with_features(model, subspace)
            terms["distill"] = ((sub_recon - old_recon) / 2).square().mean()
            terms["features"] = (sub_features - old_features).square().mean()
        total = sum(getattr(self.weights, name) * value for name, value in terms.items())
        metrics = {"loss": total.item(), **{k: v.item() for k, v in terms.items()}}
        metrics["psnr"] = -10 * torch.log10(terms["l2"].detach().clamp_min(1e-10)).item()
        return total, metrics


def _decode_with_features(vae: AutoencoderKL, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``vae.decode(latents).sample`` and the decoder's mid-block output."""
    captured = []
    handle = vae.decoder.mid_block.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        sample = vae.decode(latents).sample
    finally:
        handle.remove()
    return sample, captured[0]


def run_expand_recipe(recipe: ExpandRecipe, out_dir: str | Path, *, resume: bool = True,
                      stop_after: int | None = None, source: tuple[Teacher, DDPMScheduler | None] | None = None
                      ) -> dict[str, Any]:
    """Expand, train both stages (resuming from ``out_dir``), export the teacher folder; returns a summary.

    ``stop_after`` stops each stage after that step (to test resuming). ``source`` is the
    already-loaded :func:`load_source` result (the CLI validates before anything is written).
    """
    out_dir = Path(out_dir)
    teacher, scheduler = source if source is not None else load_source(recipe.teacher, recipe.channels)
    scheduler = scheduler or recipe.scheduler.build()
    files = resolve_image_files(recipe.data.source)
    unet_data = recipe.unet_data or recipe.data
    unet_files = resolve_image_files(unet_data.source)
    old_vae = teacher.vae
    summary: dict[str, Any] = {"recipe": "expand", "source": recipe.teacher, "channels": recipe.channels}

    loop = recipe.vae_loop
    crops = ImageCropDataset(files, recipe.data.crop_size, loop.steps * loop.batch_size, loop.seed, recipe.data.flips)
    student = expand_vae(old_vae, recipe.channels, seed=loop.seed)
    vae_run = train(ExpandVaeTask(student, old_vae, recipe.vae_loss), crops, loop, out_dir / "vae", resume=resume,
                    stop_after=stop_after)
    summary["vae"] = {"steps": vae_run.step, "resumed_from": vae_run.resumed_from,
                      "final": vae_run.history[-1] if vae_run.history else {}}
    if vae_run.step < loop.steps:
        return summary
    vae: AutoencoderKL = vae_run.model.requires_grad_(False)

    loop, data = recipe.unet_loop, unet_data
    crops = ImageCropDataset(unet_files, data.crop_size, loop.steps * loop.batch_size, loop.seed, data.flips)
    latents_old = held_out_latents(old_vae, recipe.held_out_source, data.crop_size, recipe.held_out_crops)
    old_loss = denoising_loss(teacher, latents_old, scheduler)  # before widen_unet changes the UNet in place
    wide = Teacher(name=f"{teacher.name}-{recipe.channels}ch",
                   unet=widen_unet(teacher.unet, recipe.channels, seed=loop.seed),
                   context=teacher.context, latent_size=teacher.latent_size, vae=vae)
    unet_run = train(DiffusionTask(wide, vae, scheduler), crops, loop, out_dir / "unet", resume=resume,
                     stop_after=stop_after)
    summary["unet"] = {"steps": unet_run.step, "resumed_from": unet_run.resumed_from,
                       "final": unet_run.history[-1] if unet_run.history else {}}
    if unet_run.step < loop.steps:
        return summary
    expanded = Teacher(name=wide.name, unet=unet_run.model.unet, context=unet_run.model.context,
                       latent_size=teacher.latent_size, vae=vae)
    latents_new = held_out_latents(vae, recipe.held_out_source, data.crop_size, recipe.held_out_crops)
    summary["held_out"] = {"source": recipe.held_out_source, "crops": recipe.held_out_crops,
                           "old_teacher": old_loss,
                           "expanded_teacher": denoising_loss(expanded, latents_new, scheduler)}
    export_teacher(expanded, scheduler, out_dir, info={"source": recipe.teacher, "recipe": recipe.model_dump(),
                                                       "held_out": summary["held_out"]})
    summary["teacher_folder"] = str(out_dir)
    return summary


def export_teacher(teacher: Teacher, scheduler: DDPMScheduler, folder: Path, info: dict[str, Any]) -> Path:
    """Write ``folder/weights`` (fp32, sha256 manifest with ``info``) and ``folder/teacher.yaml`` pointing at it."""
    save_teacher_weights(folder / "weights", teacher.unet, teacher.context, teacher.vae, scheduler,
                         dtype=torch.float32, info=info)
    config = {"description": f"expanded from {info['source']}", "latent_size": teacher.latent_size,
              "context": {"kind": "learned", "length": int(teacher.context.tokens.shape[0])},
              "unet": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(teacher.unet.config).items()
                       if not k.startswith("_")},
              "weights": "weights"}
    write_text(folder / TEACHER_FILE, yaml.safe_dump(config, sort_keys=False))
    return folder
