"""Recipe ``vae``: train the 16-channel ``AutoencoderKL`` on image crops (L1 + L2 reconstruction + small KL)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import pydantic
import torch
from diffusers import AutoencoderKL
from torch import nn

from ..data.images import ImageCropDataset, resolve_image_files
from ..vae import build_vae, encode_latents, save_vae
from .config import DataConfig, LoopConfig
from .loop import TrainResult, train

log = logging.getLogger(__name__)


class VaeLoss(pydantic.BaseModel, extra="forbid"):
    """Loss weights: reconstruction terms on ``[0, 1]`` pixels, KL per latent element."""

    l1: float = pydantic.Field(1.0, ge=0)
    l2: float = pydantic.Field(1.0, ge=0)
    kl: float = pydantic.Field(1e-5, ge=0)


class VaeRecipe(pydantic.BaseModel, extra="forbid"):
    """A ``train_vae.yaml`` file."""

    recipe: Literal["vae"] = "vae"
    data: DataConfig = DataConfig()
    loop: LoopConfig
    vae: dict[str, Any]
    loss: VaeLoss = VaeLoss()
    scaling_crops: int = pydantic.Field(64, gt=0)  # crops used to measure the latent scaling factor


class VaeTask:
    """Reconstruct a batch through a sampled posterior."""

    def __init__(self, vae: AutoencoderKL, weights: VaeLoss) -> None:
        self.model: nn.Module = vae
        self.frozen: tuple[nn.Module, ...] = ()
        self.weights = weights

    def loss(self, model: nn.Module, batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted reconstruction + KL loss of one batch."""
        posterior = model.encode(batch * 2 - 1).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator).to(batch.device)
        latents = posterior.mean + posterior.std * noise
        recon = (model.decode(latents).sample + 1) / 2
        l1 = (recon - batch).abs().mean()
        l2 = (recon - batch).square().mean()
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        total = self.weights.l1 * l1 + self.weights.l2 * l2 + self.weights.kl * kl
        psnr = -10 * torch.log10(l2.detach().clamp_min(1e-10))
        return total, {"loss": total.item(), "l1": l1.item(), "l2": l2.item(), "kl": kl.item(), "psnr": psnr.item()}


@torch.no_grad()
def measure_scaling_factor(vae: AutoencoderKL, dataset: torch.utils.data.Dataset, count: int, batch_size: int = 16) -> float:
    """``1 / std`` of the (unscaled) posterior means of ``count`` crops: makes latents roughly unit variance."""
    vae.register_to_config(scaling_factor=1.0)
    latents = [encode_latents(vae, torch.stack([dataset[i] for i in range(s, min(count, s + batch_size))]))
               for s in range(0, count, batch_size)]
    return float(1.0 / torch.cat(latents).std())


def run_vae_recipe(recipe: VaeRecipe, out_dir: str | Path, *, resume: bool = True,
                   stop_after: int | None = None) -> tuple[AutoencoderKL, TrainResult]:
    """Train, measure the scaling factor and save the VAE to ``out_dir/vae``."""
    out_dir = Path(out_dir)
    files = resolve_image_files(recipe.data.source)
    loop = recipe.loop
    dataset = ImageCropDataset(files, recipe.data.crop_size, loop.steps * loop.batch_size, loop.seed, recipe.data.flips)
    torch.manual_seed(loop.seed)  # diffusers initialises from the global generator
    vae = build_vae(recipe.vae, source="vae recipe")
    result = train(VaeTask(vae, recipe.loss), dataset, loop, out_dir, resume=resume, stop_after=stop_after)
    trained: AutoencoderKL = result.model
    if result.step >= loop.steps:
        held_out = ImageCropDataset(files, recipe.data.crop_size, recipe.scaling_crops, loop.seed + 1, flips=False)
        trained.register_to_config(scaling_factor=measure_scaling_factor(trained, held_out, recipe.scaling_crops))
        save_vae(trained, out_dir / "vae")
        log.info("saved VAE (scaling factor %.4f) to %s", trained.config.scaling_factor, out_dir / "vae")
    return trained, result
