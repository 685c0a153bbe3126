"""Trained weights of a teacher: its UNet, its learned context, its VAE and the noise schedule it learned.

A weights folder (``weights:`` in a teacher config, relative to the config file) holds

* ``unet.safetensors``: the UNet's state dict;
* ``context.safetensors``: the learned context (``tokens``) or precomputed ``encoder_hidden_states``;
* ``vae.json`` + ``vae.safetensors``: the ``AutoencoderKL`` (its config carries the latent ``scaling_factor``);
* ``scheduler.json``: the ``DDPMScheduler`` config used in training;
* ``manifest.json``: ``{"files": {name: sha256}, ...}``. Every file is checked against it before loading,
  so a missing or corrupted file is a one-line :class:`~tocsr_nas.errors.ConfigError` naming it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from safetensors.torch import save_file

from ..atomic import atomic_folder, checksums, sha256_file
from ..config_io import read_mapping, validate
from ..errors import ConfigError
from ..vae import VAE_CONFIG_FILE, VAE_WEIGHTS_FILE, load_state, load_vae, save_vae
from . import CONFIG_DIR, ContextProvider, Teacher, TeacherConfig, available_teachers
from .context import LearnedContext

UNET_FILE = "unet.safetensors"
CONTEXT_FILE = "context.safetensors"
SCHEDULER_FILE = "scheduler.json"
MANIFEST_FILE = "manifest.json"
WEIGHT_FILES = (UNET_FILE, CONTEXT_FILE, VAE_CONFIG_FILE, VAE_WEIGHTS_FILE, SCHEDULER_FILE)


def save_teacher_weights(folder: str | Path, unet: UNet2DConditionModel, context: ContextProvider,
                         vae: AutoencoderKL, scheduler: DDPMScheduler, *, dtype: torch.dtype = torch.float16,
                         info: dict[str, Any] | None = None) -> Path:
    """Write a weights folder (tensors cast to ``dtype``) with its sha256 manifest, atomically (fsynced; an old
    folder is replaced); returns the folder."""
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        save_file({k: v.detach().to(dtype).contiguous() for k, v in unet.state_dict().items()}, str(tmp / UNET_FILE))
        save_file({k: v.detach().to(dtype).contiguous() for k, v in context.state_dict().items()}, str(tmp / CONTEXT_FILE))
        save_vae(vae, tmp, dtype=dtype)
        (tmp / SCHEDULER_FILE).write_text(json.dumps(_public(dict(scheduler.config)), indent=2) + "\n")
        manifest = {"files": checksums(tmp, WEIGHT_FILES), **(info or {})}
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def verify_weights(folder: str | Path) -> dict[str, Any]:
    """Check every file of a weights folder against ``manifest.json``; returns the manifest."""
    folder = Path(folder)
    manifest = read_mapping(folder / MANIFEST_FILE)
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(WEIGHT_FILES):
        raise ConfigError("manifest must list every weights file", source=folder / MANIFEST_FILE, key="files",
                          allowed=WEIGHT_FILES)
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise ConfigError("weights file not found", source=path)
        if sha256_file(path) != expected:
            raise ConfigError("weights file corrupted (sha256 does not match manifest.json)", source=path)
    return manifest


def load_teacher_weights(teacher: Teacher, folder: str | Path) -> None:
    """Load a weights folder into ``teacher`` in place: UNet, context and ``teacher.vae`` (all float32)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError("weights folder not found", source=folder)
    verify_weights(folder)
    load_state(teacher.unet, folder / UNET_FILE)
    load_state(teacher.context, folder / CONTEXT_FILE)
    teacher.vae = load_vae(folder)
    if int(teacher.vae.config.latent_channels) != teacher.latent_channels:
        raise ConfigError(f"VAE has {teacher.vae.config.latent_channels} latent channels, the UNet "
                          f"{teacher.latent_channels}", source=folder / VAE_CONFIG_FILE, key="latent_channels")


def load_scheduler(folder: str | Path) -> DDPMScheduler:
    """The training noise schedule stored in a weights folder."""
    path = Path(folder) / SCHEDULER_FILE
    try:
        return DDPMScheduler.from_config(read_mapping(path))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid scheduler config ({err})", source=path) from None


def weights_folder(spec: str | Path) -> Path | None:
    """The weights folder a teacher name or config file points to (``None`` when it has none)."""
    path = Path(spec)
    if str(spec) in available_teachers() and not path.suffix:
        path = CONFIG_DIR / f"{spec}.yaml"
    if path.suffix not in {".yaml", ".yml", ".json"} or not path.is_file():
        return None
    weights = read_mapping(path).get("weights")
    return path.parent / str(weights) if weights else None


def untrained_teacher(spec: str | Path, seed: int = 0) -> Teacher:
    """A teacher built from a name or config file at random init, ignoring its ``weights:`` (to train it)."""
    path = CONFIG_DIR / f"{spec}.yaml" if str(spec) in available_teachers() else Path(spec)
    data = {k: v for k, v in read_mapping(path).items() if k != "weights"}
    config = validate(TeacherConfig, data, source=path)
    if config.context.kind != "learned":
        raise ConfigError("only a learned context can be trained", source=path, key="context.kind", allowed=["learned"])
    torch.manual_seed(seed)  # diffusers initialises from the global generator
    try:
        unet = UNet2DConditionModel(**config.unet)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid UNet config ({err})", source=path, key="unet") from None
    context = LearnedContext(config.context.length, int(unet.config.cross_attention_dim))
    return Teacher(name=path.stem, unet=unet, context=context, latent_size=config.latent_size)


def _public(config: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items() if not k.startswith("_")}
