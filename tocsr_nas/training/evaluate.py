"""Evaluation: VAE reconstruction PSNR (whole images or training-sized squares) and a seeded held-out denoising
loss."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler

from ..data.images import load_image
from ..sr.metrics import psnr_y
from ..teachers import Teacher
from ..vae import decode_latents, encode_latents, vae_stride


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, image: torch.Tensor, tile: int | None = None, batch_size: int = 64) -> torch.Tensor:
    """Encode (posterior mean) and decode one ``(3, H, W)`` image; pads to the VAE's stride and crops back.

    With ``tile``, the (replicate-padded) image is cut into non-overlapping ``tile`` x ``tile`` squares, each encoded
    and decoded alone (``batch_size`` at a time) and stitched back: a VAE trained on small crops sees the
    GroupNorm statistics of its training crops, which on whole images differ and can shift colours.
    """
    factor = vae_stride(vae)
    if tile is not None and tile % factor:
        raise ValueError(f"tile {tile} is not a multiple of the VAE's stride {factor}")
    size = tile or factor
    height, width = image.shape[1:]
    padded = F.pad(image[None], (0, (-width) % size, 0, (-height) % size), mode="replicate")
    if tile is None:
        return decode_latents(vae, encode_latents(vae, padded))[0, :, :height, :width]
    rows, cols = padded.shape[2] // size, padded.shape[3] // size
    squares = padded[0].unfold(1, size, size).unfold(2, size, size).permute(1, 2, 0, 3, 4).reshape(-1, 3, size, size)
    decoded = torch.cat([decode_latents(vae, encode_latents(vae, chunk)) for chunk in squares.split(batch_size)])
    stitched = decoded.reshape(rows, cols, 3, size, size).permute(2, 0, 3, 1, 4).reshape(3, rows * size, cols * size)
    return stitched[:, :height, :width]


def psnr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """PSNR in dB of 8-bit-quantised images in ``[0, 1]``."""
    ref, est = (reference * 255).round(), (estimate.clamp(0, 1) * 255).round()
    mse = float((ref - est).square().mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def reconstruction_psnr(vae: AutoencoderKL, files: Sequence[str | Path], tile: int | None = None) -> dict[str, float]:
    """Mean whole-image reconstruction PSNR (dB) of ``vae`` over ``files``, on RGB and on the Y channel (with
    ``tile``: each image reconstructed in ``tile``-px squares, see :func:`reconstruct`)."""
    rgb, y = [], []
    for path in files:
        image = load_image(path)
        recon = reconstruct(vae, image, tile)
        rgb.append(psnr(image, recon))
        y.append(psnr_y(recon, image))
    return {"rgb": sum(rgb) / len(rgb), "y": sum(y) / len(y)}


@torch.no_grad()
def denoising_loss(teacher: Teacher, latents: torch.Tensor, scheduler: DDPMScheduler, seed: int = 0) -> float:
    """Epsilon-prediction MSE on ``latents`` with seeded noise and timesteps (lower is better; 1 = predict zero)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    context = teacher.context(len(latents))
    prediction = teacher.unet(noisy, timesteps, encoder_hidden_states=context).sample
    return float(F.mse_loss(prediction, noise))
