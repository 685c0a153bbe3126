"""The toolkit's 16-channel VAE: a small diffusers ``AutoencoderKL`` (build, save, load).

A VAE folder holds ``vae.json`` (the ``AutoencoderKL`` config, including the measured ``scaling_factor``)
and ``vae.safetensors`` (its weights). Latents fed to a teacher are ``posterior * scaling_factor``.

One toolkit option sits beside diffusers' arguments: ``output_norm: false`` replaces the GroupNorm before
the encoder's and the decoder's last convolution with an identity. Those two norms normalise away each
image's global colour and brightness, which a small, briefly trained VAE then fails to restore.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL

from .atomic import read_safetensors, save_safetensors, write_json
from .config_io import read_mapping
from .errors import ConfigError

VAE_CONFIG_FILE = "vae.json"
VAE_WEIGHTS_FILE = "vae.safetensors"
OUTPUT_NORM_KEY = "output_norm"


def build_vae(kwargs: dict[str, Any], source: str | Path | None = None) -> AutoencoderKL:
    """A randomly initialised ``AutoencoderKL`` from its constructor arguments plus ``output_norm``.

    Bad arguments are a ``ConfigError``.
    """
    kwargs = dict(kwargs)
    output_norm = kwargs.pop(OUTPUT_NORM_KEY, True)
    if not isinstance(output_norm, bool):
        raise ConfigError(f"must be true or false, got {output_norm!r}", source=source, key=f"vae.{OUTPUT_NORM_KEY}")
    try:
        vae = AutoencoderKL(**kwargs)
    except (TypeError, ValueError) as err:
        allowed = [*sorted(AutoencoderKL.extract_init_dict({})[0]), OUTPUT_NORM_KEY]
        raise ConfigError(f"invalid VAE config ({err})", source=source, key="vae", allowed=allowed) from None
    if not output_norm:
        vae.encoder.conv_norm_out = torch.nn.Identity()
        vae.decoder.conv_norm_out = torch.nn.Identity()
    vae.register_to_config(**{OUTPUT_NORM_KEY: output_norm})
    return vae


def vae_stride(vae: AutoencoderKL) -> int:
    """Pixels per latent pixel (each block but the last halves the resolution)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def vae_config(vae: AutoencoderKL) -> dict[str, Any]:
    """The constructor arguments of ``vae`` (JSON-serialisable, without diffusers' private keys)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(vae.config).items() if not k.startswith("_")}


def save_vae(vae: AutoencoderKL, folder: str | Path, dtype: torch.dtype = torch.float32) -> None:
    """Write ``vae.json`` and ``vae.safetensors`` (tensors cast to ``dtype``) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / VAE_CONFIG_FILE, vae_config(vae), indent=2)
    save_safetensors(folder / VAE_WEIGHTS_FILE, {k: v.to(dtype) for k, v in vae.state_dict().items()})


def load_vae(folder: str | Path) -> AutoencoderKL:
    """Load a VAE saved by :func:`save_vae` (float32, eval mode). Missing/corrupt files -> ``ConfigError``."""
    folder = Path(folder)
    config_path, weights_path = folder / VAE_CONFIG_FILE, folder / VAE_WEIGHTS_FILE
    vae = build_vae(read_mapping(config_path), source=config_path)
    load_state(vae, weights_path)
    return vae.eval()


def load_state(module: torch.nn.Module, path: Path) -> None:
    """Load a safetensors file into ``module`` (cast to its dtype); any mismatch is a ``ConfigError``."""
    tensors, _ = read_safetensors(path)
    expected = module.state_dict()
    if set(tensors) != set(expected):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise ConfigError(f"weights do not match the model (missing {missing[:3]}, unexpected {extra[:3]})", source=path)
    for key, tensor in tensors.items():
        if tensor.shape != expected[key].shape:
            raise ConfigError(f"shape {tuple(tensor.shape)} != {tuple(expected[key].shape)}", source=path, key=key)
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Scaled latents of ``images`` in ``[0, 1]``: a posterior sample (or its mean without ``generator``)."""
    posterior = vae.encode(images * 2 - 1).latent_dist
    latents = posterior.mean if generator is None else posterior.sample(generator)
    return latents * float(vae.config.scaling_factor)


@torch.no_grad()
def decode_latents(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """Images in ``[0, 1]`` from scaled latents."""
    images = vae.decode(latents / float(vae.config.scaling_factor)).sample
    return ((images + 1) / 2).clamp(0, 1)


__all__ = ["build_vae", "decode_latents", "encode_latents", "load_state", "load_vae", "save_vae", "vae_config"]
