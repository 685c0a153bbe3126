"""A light encoder/decoder pair distilled from an ``AutoencoderKL``, for the fast one-step path.

The VAE's encoder and decoder cost far more than a compact one-step UNet (at 256 px output the shipped VAE
takes about 6 + 16 GMACs, the compact UNet about 4), so end to end the VAE dominates. :class:`LightVAE` replaces
them by a few 3x3 convolutions at latent resolution plus pixel (un)shuffles:

* encoder: ``PixelUnshuffle(f)`` -> conv 3x3 -> ``depth`` x (SiLU, conv 3x3) -> latent (scaled, as
  :func:`tocsr_nas.vae.encode_latents` gives);
* decoder: conv 3x3 -> ``depth`` x (SiLU, conv 3x3) -> per factor-2 stage (SiLU, conv 3x3, ``PixelShuffle(2)``)
  -> image (about ``[0, 1]``, as :func:`tocsr_nas.sr.pipeline.decode` gives).

It is trained (:class:`LightVAETask`, recipe ``sr-light``) to reproduce the VAE on crops of training images:
L1 between the light and the VAE latents (encoder) and between the light and the VAE decodings of the VAE
latents (decoder). Stored in an SR model folder as ``light/light.json`` + ``light/light.safetensors``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import pydantic
import torch
from diffusers import AutoencoderKL
from torch import nn

from ..atomic import read_safetensors, save_safetensors
from ..config_io import read_mapping
from ..errors import ConfigError
from ..training.config import DataConfig, LoopConfig
from ..vae import encode_latents, vae_stride

LIGHT_CONFIG = "light.json"
LIGHT_WEIGHTS = "light.safetensors"


class LightConfig(pydantic.BaseModel, extra="forbid"):
    """Shape of a :class:`LightVAE`."""

    latent_channels: int = pydantic.Field(16, gt=0)
    factor: int = pydantic.Field(4, gt=1)  # pixels per latent pixel (a power of 2)
    channels: int = pydantic.Field(64, gt=0)  # width at latent resolution (halved per upsampling stage)
    depth: int = pydantic.Field(2, ge=0)  # extra 3x3 convolutions at latent resolution


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class LightVAE(nn.Module):
    """A light encoder (images -> scaled latents) and decoder (scaled latents -> images), see the module doc."""

    def __init__(self, config: LightConfig) -> None:
        super().__init__()
        stages = int(math.log2(config.factor))
        if 2 ** stages != config.factor:
            raise ConfigError(f"factor {config.factor} is not a power of 2", key="light.factor")
        self.config = config
        c, width = config.latent_channels, config.channels
        enc: list[nn.Module] = [nn.PixelUnshuffle(config.factor), _conv(3 * config.factor ** 2, width)]
        dec: list[nn.Module] = [_conv(c, width)]
        for _ in range(config.depth):
            enc += [nn.SiLU(), _conv(width, width)]
            dec += [nn.SiLU(), _conv(width, width)]
        enc += [nn.SiLU(), _conv(width, c)]
        for stage in range(stages):
            out = 3 if stage == stages - 1 else max(width // 2, 8)
            dec += [nn.SiLU(), _conv(width, out * 4), nn.PixelShuffle(2)]
            width = out
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled latents of ``(B, 3, H, W)`` images in ``[0, 1]`` (``H, W`` multiples of the factor)."""
        return self.encoder(images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (about ``[0, 1]``, not clamped) of scaled latents."""
        return self.decoder(latents)


def save_light_vae(light: LightVAE, folder: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write ``light.json`` and ``light.safetensors`` (tensors in ``dtype``) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LIGHT_CONFIG).write_text(json.dumps(light.config.model_dump(), indent=2) + "\n")
    save_safetensors(folder / LIGHT_WEIGHTS, {k: v.detach().to(dtype).contiguous() for k, v in light.state_dict().items()})
    return folder


def load_light_vae(folder: str | Path) -> LightVAE:
    """Load a folder written by :func:`save_light_vae` (float32, eval mode); bad files are a ``ConfigError``."""
    folder = Path(folder)
    path = folder / LIGHT_CONFIG
    try:
        config = LightConfig.model_validate(read_mapping(path))
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"invalid light VAE config ({first['msg']})", source=path,
                          key=".".join(map(str, first["loc"]))) from None
    light = LightVAE(config)
    tensors, _ = read_safetensors(folder / LIGHT_WEIGHTS)
    try:
        light.load_state_dict({k: v.float() for k, v in tensors.items()})
    except RuntimeError as err:
        raise ConfigError(f"weights do not match light.json ({str(err).splitlines()[0]})",
                          source=folder / LIGHT_WEIGHTS) from None
    return light.eval()


class LightVAERecipe(pydantic.BaseModel, extra="forbid"):
    """An ``sr_light_vae.yaml`` file: distil a :class:`LightVAE` from a VAE on crops of training images."""

    recipe: Literal["sr-light"] = "sr-light"
    teacher: str = "tiny-ldm"  # whose shipped VAE is distilled, unless vae is given
    vae: str | None = None  # VAE folder (vae.json + vae.safetensors)
    light: LightConfig = LightConfig()
    data: DataConfig = DataConfig()
    loop: LoopConfig


class LightVAETask:
    """L1 of the light encoder to the VAE's latents plus L1 of the light decoder to the VAE's decodings."""

    def __init__(self, light: LightVAE, vae: AutoencoderKL) -> None:
        self.model: nn.Module = light
        self.vae = vae.eval().requires_grad_(False)
        self.frozen: tuple[nn.Module, ...] = (self.vae,)

    def loss(self, model: nn.Module, batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Encoder and decoder distillation terms of one batch of ``(B, 3, S, S)`` crops."""
        model = getattr(model, "module", model)
        latents = encode_latents(self.vae, batch)
        with torch.no_grad():
            target = (self.vae.decode(latents / float(self.vae.config.scaling_factor)).sample + 1) / 2
        encoder = (model.encode(batch) - latents).abs().mean()
        decoder = (model.decode(latents) - target).abs().mean()
        return encoder + decoder, {"encoder_l1": float(encoder.detach()), "decoder_l1": float(decoder.detach())}


def run_light_vae(recipe: LightVAERecipe, out_dir: str | Path, *, resume: bool = True,
                  stop_after: int | None = None, export_at: int | None = None) -> dict[str, Any]:
    """Distil; when finished (or at step ``export_at``, as in :func:`~.train.run_sr_adapt`), export ``out_dir/light``."""
    from ..data.images import ImageCropDataset, resolve_image_files  # noqa: PLC0415
    from ..teachers import load_teacher  # noqa: PLC0415
    from ..training.loop import train  # noqa: PLC0415
    from ..vae import load_vae  # noqa: PLC0415

    out_dir = Path(out_dir)
    vae = load_vae(recipe.vae) if recipe.vae is not None else load_teacher(recipe.teacher).vae
    if vae is None:
        raise ConfigError("no VAE: give vae: (a VAE folder) or a teacher with shipped weights", key="vae")
    if int(vae.config.latent_channels) != recipe.light.latent_channels:
        raise ConfigError(f"the VAE has {vae.config.latent_channels} latent channels", key="light.latent_channels",
                          allowed=[int(vae.config.latent_channels)])
    factor = vae_stride(vae)
    if recipe.light.factor != factor:
        raise ConfigError(f"the VAE's factor is {factor}", key="light.factor", allowed=[factor])
    torch.manual_seed(recipe.loop.seed)
    loop = recipe.loop
    dataset = ImageCropDataset(resolve_image_files(recipe.data.source), recipe.data.crop_size,
                               loop.steps * loop.batch_size, seed=loop.seed, flips=recipe.data.flips)
    result = train(LightVAETask(LightVAE(recipe.light), vae), dataset, loop, out_dir, resume=resume,
                   stop_after=export_at or stop_after)
    summary: dict[str, Any] = {"recipe": "sr-light", "steps": result.step, "resumed_from": result.resumed_from,
                               "wall_s": result.wall_s, "final": result.history[-1] if result.history else {}}
    if result.step >= min(loop.steps, export_at or loop.steps):
        summary["light"] = str(save_light_vae(result.model, out_dir / "light"))
    return summary


__all__ = ["LightConfig", "LightVAE", "LightVAERecipe", "LightVAETask", "load_light_vae", "run_light_vae",
           "save_light_vae"]
