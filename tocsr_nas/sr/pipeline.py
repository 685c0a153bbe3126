"""SR inference: K-step residual-shifting sampling from the LR latent, one-step prediction, whole-image upscaling.

Latent conventions: the LR image is upsampled (MATLAB bicubic) to the HR size and encoded by the VAE
(posterior mean times ``scaling_factor``); the SR net sees ``noisy HR latent ++ LR latent``.

* ``sr-diffusion``: the residual-shifting process of :mod:`.shift` (x0 read through the schedule), sampled
  deterministically from the LR latent plus seeded noise (:func:`~.shift.sample_latent`).
* ``sr-onestep``: one call at the fixed timestep ``t`` with ``x_t = sqrt(abar_t) * z_LR`` (no noise); the
  output is read through the schedule's x0 formula, ``x0 = (x_t - sqrt(1 - abar_t) * out) / sqrt(abar_t)``,
  i.e. ``x0 = z_LR - sqrt((1 - abar_t) / abar_t) * out``. This fixed affine map makes the student's output an
  x0 (clean HR latent) prediction while its initialisation from the epsilon-predicting SR model stays meaningful.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler

from ..degradations import imresize
from ..device import autocast
from ..errors import ConfigError
from ..vae import encode_latents
from .adapt import SRUNet
from .colorfix import color_fix
from .light_vae import LightVAE
from .model import SRModel
from .shift import sample_latent
from .tiling import tiled_apply

Codec = AutoencoderKL | LightVAE  # what turns images into scaled latents and back


def decode(vae: Codec, latents: torch.Tensor) -> torch.Tensor:
    """Images (about ``[0, 1]``, not clamped) from scaled latents; differentiable (for pixel losses)."""
    if isinstance(vae, LightVAE):
        return vae.decode(latents)
    return (vae.decode(latents / float(vae.config.scaling_factor)).sample + 1) / 2


def encode(vae: Codec, images: torch.Tensor) -> torch.Tensor:
    """Scaled latents (the VAE's posterior means, or the light encoder's output) of images in ``[0, 1]``."""
    return vae.encode(images) if isinstance(vae, LightVAE) else encode_latents(vae, images)


def to_pixels(vae: Codec, latent: torch.Tensor, lr_latent: torch.Tensor, upsampled: torch.Tensor,
              output: str) -> torch.Tensor:
    """Pixels from a predicted HR latent: ``D(latent)`` (``direct``) or ``upsampled + D(latent) - D(lr_latent)``.

    ``residual`` keeps the bicubic image wherever the model leaves the LR latent unchanged, so only the change the
    model makes passes through the decoder; ``D(lr_latent)`` carries no gradient. Not clamped.
    """
    image = decode(vae, latent)
    if output == "residual":
        with torch.no_grad():
            base = decode(vae, lr_latent)
        image = upsampled + image - base
    return image


def onestep_latent(net: SRUNet, scheduler: DDPMScheduler, timestep: int, lr_latent: torch.Tensor) -> torch.Tensor:
    """The HR latent predicted in one forward pass at ``timestep`` (differentiable)."""
    abar = scheduler.alphas_cumprod[timestep].to(lr_latent.dtype)
    sample = abar.sqrt() * lr_latent
    t = torch.full((len(lr_latent),), timestep, dtype=torch.long, device=lr_latent.device)
    out = net(sample, lr_latent, t)
    return (sample - (1 - abar).sqrt() * out) / abar.sqrt()


def require_sampleable(model: SRModel, source: str | Path | None = None) -> None:
    """Refuse an sr-diffusion model saved before the residual-shifting process (it has no ``shift`` to sample)."""
    if model.kind == "sr-diffusion" and model.shift is None:
        raise ConfigError("this sr-diffusion model predates the residual-shifting process (no 'shift' in its "
                          "sr_model.json) and cannot be sampled; retrain it with `tocsr-nas train-sr adapt`",
                          source=source, key="shift")


@torch.no_grad()
def predict_latent(model: SRModel, lr_latent: torch.Tensor, *, steps: int = 50,
                   noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """The HR latent for ``lr_latent``: one call (one-step model) or ``steps`` sampling steps (diffusion model)."""
    if model.kind == "sr-onestep":
        return onestep_latent(model.net, model.scheduler, int(model.timestep), lr_latent)
    require_sampleable(model)
    if noise is None:
        noise = torch.randn(lr_latent.shape, generator=generator)
    return sample_latent(model.net, model.shift, model.scheduler, lr_latent, steps, noise)


def upsample_lr(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB-bicubic upsampling of ``(C, h, w)`` by ``scale``, clamped to ``[0, 1]``."""
    return imresize(lr, float(scale)).clamp(0, 1)


@torch.no_grad()
def upscale_image(model: SRModel, lr: torch.Tensor, *, steps: int = 50, tile: int = 512, overlap: int = 64,
                  seed: int = 0, fix: str = "none", output: str | None = None, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32, light: bool = False) -> torch.Tensor:
    """Super-resolve one ``(3, h, w)`` image in ``[0, 1]`` to ``(3, h * scale, w * scale)``.

    The bicubic-upsampled image is padded (replicate) to a multiple of the VAE and UNet strides and processed
    in overlapping ``tile``-pixel tiles (HR pixels; memory is bounded by the tile), blended by
    :func:`~tocsr_nas.sr.tiling.tiled_apply`. The diffusion model's initial noise is drawn once for the whole
    image from ``seed`` and sliced per tile. ``fix`` is a colour fix towards the bicubic image; ``output``
    overrides the model's output mode (``direct`` or ``residual``, see :func:`to_pixels`). Each tile runs on
    ``device`` under autocast in ``dtype`` (the noise is drawn on the CPU: the same seed, the same image on every
    device); the blend, the colour fix and the result stay on the CPU in float32. ``light`` encodes and decodes
    with the model's light VAE (:mod:`.light_vae`) instead of its VAE.
    """
    if light and model.light is None:
        raise ConfigError("this SR model has no light VAE", key="light")
    codec: Codec = model.light if light else model.vae
    device = torch.device(device)
    model.net.to(device)
    codec.to(device)
    output = output or model.output
    height, width = lr.shape[-2] * model.scale, lr.shape[-1] * model.scale
    upsampled = upsample_lr(lr, model.scale)
    align = model.vae_factor * model.unet_factor
    padded = F.pad(upsampled[None], (0, (-width) % align, 0, (-height) % align), mode="replicate")[0]
    full_h, full_w = padded.shape[-2:]
    factor = model.vae_factor
    noise = None
    if model.kind == "sr-diffusion":
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(1, model.net.latent_channels, full_h // factor, full_w // factor, generator=generator)

    def run_tile(region: tuple[int, int, int, int]) -> torch.Tensor:
        top, left, bottom, right = region
        crop = padded[None, :, top:bottom, left:right].to(device)
        tile_noise = None if noise is None else noise[..., top // factor:bottom // factor,
                                                      left // factor:right // factor].to(device)
        with autocast(device, dtype):
            lr_latent = encode(codec, crop).float()
            latent = predict_latent(model, lr_latent, steps=steps, noise=tile_noise).float()
            pixels = to_pixels(codec, latent, lr_latent, crop, output)
        return pixels[0].float().clamp(0, 1).cpu()

    tile_px = max(align, tile // align * align)
    output = tiled_apply(run_tile, full_h, full_w, tile_px, min(overlap, tile_px - align), align)
    output = output[:, :height, :width]
    return color_fix(output, upsampled, fix)


__all__ = ["Codec", "decode", "encode", "onestep_latent", "predict_latent", "require_sampleable", "to_pixels", "upsample_lr", "upscale_image"]
