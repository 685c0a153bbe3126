"""The teacher's UNet calls during distillation: noisy latents of real crops at sampled timesteps.

Batch ``s`` is a pure function of ``(seed, s)``: items ``s*B .. s*B+B-1`` of the latent source, noise and
timesteps from a generator seeded with ``(seed, s)``. A resumed run, or another worker, sees the same batches.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import torch
from diffusers import AutoencoderKL, DDPMScheduler

from ..atomic import read_safetensors
from ..data.images import ImageCropDataset, resolve_image_files
from ..errors import ConfigError
from ..teachers import Teacher
from ..training.teacher_recipe import SchedulerConfig
from ..vae import encode_latents, load_vae, vae_stride
from .config import LatentConfig, TimestepConfig

log = logging.getLogger(__name__)

HELD_OUT_OFFSET = 7_919  # seed offset of the held-out stream


class LatentSource(Protocol):
    """Clean latents ``(len(indices), C, H, W)`` for item indices (the same index, the same latent)."""

    def latents(self, indices: list[int]) -> torch.Tensor: ...


class VaeLatents:
    """Posterior-mean latents of seeded image crops encoded by a VAE."""

    def __init__(self, vae: AutoencoderKL, files: list[Path], latent_size: int, length: int, seed: int,
                 flips: bool) -> None:
        factor = vae_stride(vae)
        self.vae = vae.eval().requires_grad_(False)
        self.dataset = ImageCropDataset(files, latent_size * factor, length, seed=seed, flips=flips)

    def latents(self, indices: list[int]) -> torch.Tensor:
        images = torch.stack([self.dataset[i] for i in indices])
        return encode_latents(self.vae, images).contiguous()  # the VAE may return channels-last tensors


class FileLatents:
    """Pre-encoded latents from a safetensors file (``latents``: ``(N, C, H, W)``), item ``i`` is ``i mod N``."""

    def __init__(self, path: str | Path, shape: tuple[int, int, int]) -> None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError("latents file not found", source=path, key="latents.file")
        tensor = read_safetensors(path)[0].get("latents")
        if tensor is None or tensor.dim() != 4 or tuple(tensor.shape[1:]) != shape:
            found = None if tensor is None else tuple(tensor.shape)
            raise ConfigError(f"needs a 'latents' tensor of shape (N, {', '.join(map(str, shape))}), found {found}",
                              source=path, key="latents")
        self.tensor = tensor.float()

    def latents(self, indices: list[int]) -> torch.Tensor:
        return self.tensor[[i % len(self.tensor) for i in indices]]


class GaussianLatents:
    """Unit-variance Gaussian "clean" latents, seeded per item (a stand-in when no VAE exists)."""

    def __init__(self, shape: tuple[int, int, int], seed: int) -> None:
        self.shape, self.seed = shape, seed

    def latents(self, indices: list[int]) -> torch.Tensor:
        return torch.stack([torch.randn(self.shape, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + i))
                            for i in indices])


def build_latent_source(config: LatentConfig, teacher: Teacher, latent_size: int, *, length: int, seed: int,
                        held_out: bool = False) -> LatentSource:
    """The latent source ``config`` describes (``held_out``: a disjoint, unflipped crop stream)."""
    shape = (teacher.latent_channels, latent_size, latent_size)
    seed = seed + HELD_OUT_OFFSET if held_out else seed
    source = config.source
    if source == "auto":
        source = "vae" if teacher.vae is not None or config.vae is not None else "gaussian"
        if source == "gaussian" and not held_out:
            log.warning("teacher '%s' has no VAE and no latents.vae is set: distilling on Gaussian latents",
                        teacher.name)
    if source == "gaussian":
        return GaussianLatents(shape, seed)
    if source == "file":
        if config.file is None:
            raise ConfigError("latents.source 'file' needs latents.file", key="latents.file")
        return FileLatents(config.file, shape)
    vae = load_vae(config.vae) if config.vae is not None else teacher.vae
    if vae is None:
        raise ConfigError(f"teacher '{teacher.name}' has no VAE; set latents.vae", key="latents.vae")
    if int(vae.config.latent_channels) != teacher.latent_channels:
        raise ConfigError(f"VAE has {vae.config.latent_channels} latent channels, the teacher {teacher.latent_channels}",
                          key="latents.vae")
    return VaeLatents(vae, resolve_image_files(config.images), latent_size, length, seed,
                      config.flips and not held_out)


def sample_timesteps(config: TimestepConfig, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` integer timesteps in ``[min, max]`` from the configured distribution."""
    if config.distribution == "uniform":
        return torch.randint(config.min, config.max + 1, (count,), generator=generator)
    u = torch.sigmoid(config.mean + config.std * torch.randn(count, generator=generator))
    return (config.min + u * (config.max - config.min)).round().long()


class UNetCalls:
    """The seeded teacher calls ``{sample, timestep, encoder_hidden_states}`` of a distillation run."""

    def __init__(self, teacher: Teacher, source: LatentSource, scheduler: DDPMScheduler, config: TimestepConfig,
                 seed: int) -> None:
        if config.max >= scheduler.config.num_train_timesteps:
            raise ConfigError(f"timesteps.max {config.max} >= the scheduler's {scheduler.config.num_train_timesteps} steps",
                              key="timesteps.max")
        self.teacher, self.source, self.scheduler, self.config, self.seed = teacher, source, scheduler, config, seed

    @torch.no_grad()
    def batch(self, index: int, batch_size: int) -> dict[str, torch.Tensor]:
        """Call number ``index``: items ``index*B .. index*B+B-1``."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        latents = self.source.latents(list(range(index * batch_size, (index + 1) * batch_size)))
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = sample_timesteps(self.config, batch_size, generator)
        return {"sample": self.scheduler.add_noise(latents, noise, timesteps).contiguous(), "timestep": timesteps,
                "encoder_hidden_states": self.teacher.context(batch_size, generator).detach()}


def noise_scheduler(teacher_spec: str) -> DDPMScheduler:
    """The training schedule stored with the teacher's weights, else the default ``DDPMScheduler``."""
    from ..teachers.weights import SCHEDULER_FILE, load_scheduler, weights_folder  # noqa: PLC0415

    folder = weights_folder(teacher_spec)
    if folder is not None and (folder / SCHEDULER_FILE).is_file():
        return load_scheduler(folder)
    return SchedulerConfig().build()


__all__ = ["FileLatents", "GaussianLatents", "LatentSource", "UNetCalls", "VaeLatents", "build_latent_source",
           "noise_scheduler", "sample_timesteps"]
