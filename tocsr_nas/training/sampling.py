"""Drawing images from a trained teacher with DDIM, and tiling them into a grid."""
from __future__ import annotations

import math

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from PIL import Image
from tqdm.auto import tqdm

from ..device import autocast
from ..errors import ConfigError
from ..teachers import Teacher
from ..vae import decode_latents


@torch.no_grad()
def sample_images(teacher: Teacher, scheduler: DDPMScheduler, count: int, *, steps: int = 50, eta: float = 0.0,
                  seed: int = 0, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``count`` images ``(N, 3, H, W)`` in ``[0, 1]``: DDIM from seeded noise, then the teacher's VAE.

    The UNet and the VAE run on ``device`` under autocast in ``dtype``; the noise is drawn on the CPU (the same
    seed gives the same start on every device) and the images come back to the CPU in float32."""
    if teacher.vae is None:
        raise ConfigError("teacher has no VAE (it ships no trained weights)", source=teacher.name, key="weights")
    generator = torch.Generator().manual_seed(seed)
    size = teacher.latent_size
    noise = torch.randn(count, teacher.latent_channels, size, size, generator=generator)
    context = teacher.context(count, generator)
    device = torch.device(device)
    latents = ddim_latents(teacher.unet.to(device), scheduler, noise.to(device), context.to(device), steps, eta=eta,
                           generator=generator, dtype=dtype, progress=True)
    with autocast(device, dtype):
        images = decode_latents(teacher.vae.to(device), latents)
    return images.float().cpu()


@torch.no_grad()
def ddim_latents(unet: torch.nn.Module, scheduler: DDPMScheduler, noise: torch.Tensor, context: torch.Tensor,
                 steps: int, *, eta: float = 0.0, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32, progress: bool = False) -> torch.Tensor:
    """Latents from ``steps`` DDIM steps of an epsilon-predicting UNet, from pure ``noise`` (on the UNet's device).

    The UNet runs under autocast in ``dtype``; with ``eta > 0`` each step's noise is drawn on the CPU from
    ``generator``."""
    ddim = DDIMScheduler.from_config(scheduler.config)
    ddim.set_timesteps(steps)
    latents = noise * ddim.init_noise_sigma
    for t in tqdm(ddim.timesteps, desc="sample", unit="step", disable=None if progress else True):
        with autocast(latents.device, dtype):
            eps = unet(ddim.scale_model_input(latents, t), t, encoder_hidden_states=context).sample.float()
        step_noise = None if eta == 0 else torch.randn(latents.shape, generator=generator).to(latents.device)
        latents = ddim.step(eps, t, latents, eta=eta, variance_noise=step_noise).prev_sample
    return latents


def image_grid(images: torch.Tensor, columns: int | None = None, pad: int = 2) -> Image.Image:
    """Tile ``(N, 3, H, W)`` images in ``[0, 1]`` into one RGB image with ``pad`` white pixels between tiles."""
    count, _, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.ones((rows * (height + pad) + pad, columns * (width + pad) + pad, 3), dtype=np.float32)
    for index, image in enumerate(images):
        top = pad + (index // columns) * (height + pad)
        left = pad + (index % columns) * (width + pad)
        grid[top:top + height, left:left + width] = image.permute(1, 2, 0).numpy()
    return Image.fromarray((grid * 255).round().astype(np.uint8))
