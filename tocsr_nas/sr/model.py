"""The SR model folder: an adapted UNet, the VAE of its latent space, the noise schedule, scale and kind.

A folder holds

* ``sr_model.json``: ``{"format": "tocsr-nas/sr-model", "version", "kind", "scale", "lr_channels",
  "timestep", "shift", "output", "backbone": {"type": "unet"|"compact", "unet_config", "choices"?, "meta"?, "plugins"?}, "context_shape",
  "scheduler": {DDPMScheduler config}, "vae": {"folder": "vae", "sha256": ...}, "info": {...}}``;
* ``model.safetensors``: the adapted UNet (``unet.*``) and its context (``context``);
* ``vae/``: the VAE (``vae.json`` + ``vae.safetensors``), copied in so the folder is self-contained;
* ``light/`` (optional): a light encoder/decoder distilled from the VAE (:mod:`.light_vae`), recorded with its
  sha256 under ``"light"``.

``kind`` is ``sr-diffusion`` (K-step sampling of the residual-shifting process recorded under ``shift``, see
:mod:`.shift`) or ``sr-onestep`` (one call at the fixed ``timestep``). Folders of sr-diffusion models written
before the residual-shifting process (``start_timestep`` instead of ``shift``) still load, e.g. as a one-step
model's initialisation, but cannot be sampled. ``output`` is how pixels are made from the predicted latent ``z``: ``direct`` decodes it;
``residual`` adds the decoded change to the bicubic image, ``bicubic + D(z) - D(z_LR)``, so the VAE's own
reconstruction error largely cancels (see :func:`~tocsr_nas.sr.pipeline.to_pixels`). Loading rebuilds the UNet from the JSON alone (never executes code from the folder) and
refuses a folder of another format or kind with a one-line :class:`~tocsr_nas.errors.ConfigError`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pydantic
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from safetensors.torch import save_file

from ..atomic import atomic_folder, read_safetensors
from ..compact import CompactUNet, UnitChoice, check_plugins
from ..config_io import read_folder_config
from ..errors import ConfigError
from ..training.checkpoint import sha256_file
from ..vae import VAE_WEIGHTS_FILE, load_vae, save_vae, vae_stride
from .adapt import SRUNet, widen_conv_in
from .light_vae import LIGHT_WEIGHTS, LightVAE, load_light_vae, save_light_vae
from .shift import ShiftConfig

FORMAT = "tocsr-nas/sr-model"
FORMAT_VERSION = 1
CONFIG_NAME = "sr_model.json"
WEIGHTS_NAME = "model.safetensors"
VAE_DIR = "vae"
LIGHT_DIR = "light"
KINDS = ("sr-diffusion", "sr-onestep")
OUTPUTS = ("direct", "residual")


@dataclasses.dataclass
class SRModel:
    """Everything needed to super-resolve: the adapted net, its VAE and schedule, the scale and the kind.

    ``timestep`` is the fixed timestep of a one-step model (``None`` for a diffusion model); ``shift`` is a
    diffusion model's residual-shifting schedule (``None`` only in folders written before it: not sampleable).
    """

    net: SRUNet
    vae: AutoencoderKL
    scheduler: DDPMScheduler
    kind: str
    scale: int
    timestep: int | None = None
    shift: ShiftConfig | None = None
    output: str = "direct"
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    light: LightVAE | None = None  # a light encoder/decoder distilled from ``vae`` (the fast path), if any

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown SR model kind {self.kind!r}", key="kind", allowed=list(KINDS))
        if self.output not in OUTPUTS:
            raise ConfigError(f"unknown output mode {self.output!r}", key="output", allowed=list(OUTPUTS))
        if self.kind == "sr-onestep" and self.timestep is None:
            raise ConfigError("a one-step model needs a timestep", key="timestep")

    @property
    def vae_factor(self) -> int:
        """Pixels per latent pixel of the VAE."""
        return vae_stride(self.vae)

    @property
    def unet_factor(self) -> int:
        """Latent pixels per deepest UNet feature pixel (the latent size must be a multiple of it)."""
        return 2 ** (len(self.net.unet.config.block_out_channels) - 1)


def _backbone_json(net: SRUNet) -> dict[str, Any]:
    if isinstance(net.unet, CompactUNet):
        return {"type": "compact", "unet_config": net.unet.unet_config,
                "choices": {path: c.to_json() for path, c in net.unet.choices.items()}, "meta": net.unet.meta,
                "plugins": dict(net.unet.config.plugins)}  # op -> plug-in, named when loaded without it
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(net.unet.config).items()
              if not k.startswith("_")}
    return {"type": "unet", "unet_config": config}


def save_sr_model(model: SRModel, folder: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write ``model`` to ``folder`` atomically (a temp folder renamed into place; an old folder is replaced).

    Tensors are stored in ``dtype`` (``float16`` halves a shipped folder); loading always gives float32.
    """
    folder = Path(folder)
    lr_channels = int(model.net.unet.conv_in.in_channels) - model.net.latent_channels
    with atomic_folder(folder) as tmp:
        save_vae(model.vae, tmp / VAE_DIR, dtype=dtype)
        state = {k: v.detach().to(dtype).contiguous() for k, v in model.net.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": FORMAT, "kind": model.kind})
        config = {
            "format": FORMAT, "version": FORMAT_VERSION, "kind": model.kind, "scale": model.scale,
            "timestep": model.timestep, "shift": None if model.shift is None else model.shift.model_dump(),
            "output": model.output,
            "lr_channels": lr_channels, "backbone": _backbone_json(model.net),
            "context_shape": list(model.net.context.shape),
            "scheduler": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(model.scheduler.config).items()
                          if not k.startswith("_")},
            "vae": {"folder": VAE_DIR, "sha256": sha256_file(tmp / VAE_DIR / VAE_WEIGHTS_FILE)},
            "light": None if model.light is None else {
                "folder": LIGHT_DIR, "sha256": sha256_file(save_light_vae(model.light, tmp / LIGHT_DIR, dtype=dtype)
                                                           / LIGHT_WEIGHTS)},
            "weights_sha256": sha256_file(tmp / WEIGHTS_NAME),
            "info": model.info,
        }
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def read_sr_config(folder: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The validated ``sr_model.json`` of ``folder``; ``kind`` (if given) must match."""
    path = Path(folder) / CONFIG_NAME
    config = read_folder_config(folder, CONFIG_NAME, what="an SR model", format=FORMAT, version=FORMAT_VERSION)
    allowed = list(KINDS) if kind is None else [kind]
    if config.get("kind") not in allowed:
        raise ConfigError(f"model kind {config.get('kind')!r} is not accepted here", source=path, key="kind",
                          allowed=allowed)
    return config


def _build_net(config: dict[str, Any], path: Path) -> SRUNet:
    backbone = config.get("backbone", {})
    if not isinstance(backbone, dict) or backbone.get("type") not in {"unet", "compact"}:
        found = backbone.get("type") if isinstance(backbone, dict) else backbone
        raise ConfigError(f"unknown backbone type {found!r}", source=path, key="backbone.type",
                          allowed=["unet", "compact"])
    try:
        unet: torch.nn.Module = UNet2DConditionModel(**backbone["unet_config"])
        if backbone["type"] == "compact":
            choices = {p: UnitChoice.from_json(c) for p, c in backbone["choices"].items()}
            check_plugins(choices, backbone.get("plugins") or {}, source=path)
            unet = CompactUNet.build(unet, choices, meta=backbone.get("meta"))
        widen_conv_in(unet, int(config["lr_channels"]))
        return SRUNet(unet, torch.zeros(*config["context_shape"]))
    except ConfigError:  # a plug-in that is not loaded: its own one-line message
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"invalid backbone ({type(err).__name__}: {err})", source=path, key="backbone") from None


def _shift(config: dict[str, Any], path: Path) -> ShiftConfig | None:
    if config.get("shift") is None:
        return None
    try:
        return ShiftConfig.model_validate(config["shift"])
    except pydantic.ValidationError as err:
        raise ConfigError(f"invalid shift schedule ({err.errors()[0]['msg']})", source=path, key="shift") from None


def load_sr_model(folder: str | Path, kind: str | None = None) -> SRModel:
    """Load an SR model folder (weights verified against the recorded sha256); ``kind`` restricts what is accepted."""
    folder = Path(folder)
    config = read_sr_config(folder, kind)
    path = folder / CONFIG_NAME
    net = _build_net(config, path)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ConfigError("weights file not found", source=weights)
    if config.get("weights_sha256") and sha256_file(weights) != config["weights_sha256"]:
        raise ConfigError("weights file corrupted (sha256 does not match sr_model.json)", source=weights)
    state, _ = read_safetensors(weights)
    try:
        # folders written while a compact UNet wrapped its diffusers UNet (``unet.unet.*``) load as they are now
        state = {k.replace("unet.unet.", "unet.", 1) if k.startswith("unet.unet.") else k: v for k, v in state.items()}
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(f"weights do not match the config ({str(err).splitlines()[0]})", source=weights) from None
    vae_dir = folder / str(config.get("vae", {}).get("folder", VAE_DIR))
    expected = config.get("vae", {}).get("sha256")
    if expected and (vae_dir / VAE_WEIGHTS_FILE).is_file() and sha256_file(vae_dir / VAE_WEIGHTS_FILE) != expected:
        raise ConfigError("VAE weights corrupted (sha256 does not match sr_model.json)", source=vae_dir)
    vae = load_vae(vae_dir)
    light = None
    if config.get("light"):
        light_dir = folder / str(config["light"].get("folder", LIGHT_DIR))
        if sha256_file(light_dir / LIGHT_WEIGHTS) != config["light"].get("sha256"):
            raise ConfigError("light VAE weights corrupted (sha256 does not match sr_model.json)", source=light_dir)
        light = load_light_vae(light_dir)
    try:
        scheduler = DDPMScheduler.from_config(config["scheduler"])
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"invalid scheduler ({err})", source=path, key="scheduler") from None
    scale = config.get("scale")
    if not isinstance(scale, int) or scale < 1:
        raise ConfigError(f"invalid scale {scale!r}", source=path, key="scale", allowed="a positive integer")
    return SRModel(net=net.eval(), vae=vae.eval(), scheduler=scheduler, kind=config["kind"], scale=scale,
                   timestep=config.get("timestep"), shift=_shift(config, path),
                   output=config.get("output", "direct"),
                   info=dict(config.get("info", {})), light=light)


__all__ = ["CONFIG_NAME", "FORMAT", "KINDS", "OUTPUTS", "SRModel", "load_sr_model", "read_sr_config", "save_sr_model"]
