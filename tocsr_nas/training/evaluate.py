"""Evaluation: VAE reconstruction PSNR on whole images and a seeded held-out denoising loss."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler

from ..data.images import load_image
from ..teachers import Teacher
from ..vae import decode_latents, encode_latents


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, image: torch.Tensor) -> torch.Tensor:
    """Encode (posterior mean) and decode one ``(3, H, W)`` image; pads to the VAE's stride and crops back."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    height, width = image.shape[1:]
    pad_h, pad_w = (-height) % factor, (-width) % factor
    padded = F.pad(image[None], (0, pad_w, 0, pad_h), mode="replicate")
    return decode_latents(vae, encode_latents(vae, padded))[0, :, :height, :width]


def psnr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """PSNR in dB of 8-bit-quantised images in ``[0, 1]``."""
    ref, est = (reference * 255).round(), (estimate.clamp(0, 1) * 255).round()
    mse = float((ref - est).square().mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def vae_psnr(vae: AutoencoderKL, files: Sequence[str | Path]) -> float:
    """Mean reconstruction PSNR (dB) of ``vae`` over whole images."""
    values = []
    for path in files:
        image = load_image(path)
        values.append(psnr(image, reconstruct(vae, image)))
    return sum(values) / len(values)


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
