"""Latent capacity expansion (4 -> 16 channels): the initialisations that start a wider model equal to the old one.

* :func:`widen_unet` widens a UNet's ``conv_in``/``conv_out`` in place: the new latent's first ``C`` channels are the
  old latent; ``conv_in``'s weights for the extra input channels start at zero, so the widened UNet reproduces the
  old one exactly on the old subspace (its first ``C`` output channels are the old output whatever the extra input
  channels hold). ``conv_out``'s extra output channels keep a fresh convolution's random init (seeded), not zero:
  with both ends of the new path at zero the new path is a saddle (the extra inputs reach no output, and the
  features the extra outputs read carry nothing of the extra inputs, so both get only noise gradients), and
  fine-tuning barely moved off the zero prediction on the new channels (loss ~0.79 = (4 x old + 12 x 1) / 16).
* :func:`expand_vae` builds an ``AutoencoderKL`` with a wider latent from an old one: every tensor whose shape is
  unchanged is copied; the encoder's mean/log-variance rows, ``quant_conv`` and ``post_quant_conv`` keep the old
  blocks on the old channels and map the extra channels by identity; the decoder's ``conv_in`` ignores the extra
  channels (zero weights) and the encoder's extra mean rows keep their fresh random init, so the expanded VAE
  encodes the old latent on its first channels and decodes exactly as the old VAE at init, while the extra
  channels carry image information for training to use (the gradient reaches the decoder's zero weights). The
  extra log-variance rows copy the old ones (extra channel ``k`` takes old channel ``k mod C``'s): a fresh init
  gives them log-variance ~0, i.e. sampling noise as large as their signal, which a trained VAE's channels
  (log-variance ~-4..-7) do not have, and which kept the decoder from using them.

Training after these initialisations (VAE distillation, UNet fine-tuning) is not part of this module.
"""
from __future__ import annotations

import copy

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn

from .errors import ConfigError
from .vae import build_vae, vae_config


@torch.no_grad()
def widen_unet(unet: UNet2DConditionModel, channels: int, *, seed: int = 0) -> UNet2DConditionModel:
    """Widen ``unet``'s latent from ``C`` to ``channels`` in place (see the module docstring); returns it."""
    old_in, old_out = int(unet.config.in_channels), int(unet.config.out_channels)
    if channels <= max(old_in, old_out):
        raise ConfigError(f"the UNet already has {old_in} input / {old_out} output channels, not fewer than {channels}",
                          key="channels")
    conv_in, conv_out = unet.conv_in, unet.conv_out
    wide_in = nn.Conv2d(channels, conv_in.out_channels, conv_in.kernel_size, padding=conv_in.padding)
    wide_in.weight.zero_()
    wide_in.weight[:, :old_in] = conv_in.weight
    wide_in.bias.copy_(conv_in.bias)
    wide_out = nn.Conv2d(conv_out.in_channels, channels, conv_out.kernel_size, padding=conv_out.padding)
    generator = torch.Generator().manual_seed(seed)
    nn.init.kaiming_uniform_(wide_out.weight, a=5 ** 0.5, generator=generator)  # nn.Conv2d's default init
    wide_out.bias.zero_()
    wide_out.weight[:old_out] = conv_out.weight
    wide_out.bias[:old_out] = conv_out.bias
    unet.conv_in, unet.conv_out = wide_in.to(conv_in.weight), wide_out.to(conv_out.weight)
    unet.register_to_config(in_channels=channels, out_channels=channels)
    return unet


def _embed_1x1(old: nn.Conv2d, new: nn.Conv2d, rows: list[int], cols: list[int]) -> None:
    """``new`` = identity, with ``old``'s weights placed at ``rows`` x ``cols`` (1x1 convolutions)."""
    new.weight.zero_()
    new.bias.zero_()
    for i in range(new.out_channels):
        new.weight[i, i] = 1.0
    index_rows, index_cols = torch.tensor(rows), torch.tensor(cols)
    for i, r in enumerate(index_rows):
        new.weight[r, :, 0, 0] = 0.0
        new.weight[r, index_cols, 0, 0] = old.weight[i, :, 0, 0]
        new.bias[r] = old.bias[i]


def _copy_rows(old: nn.Conv2d, new: nn.Conv2d, rows: dict[int, int], cols: list[int]) -> None:
    """``new``'s output row ``r`` becomes ``old``'s row ``rows[r]`` on input channels ``cols`` (zero elsewhere)."""
    index = torch.tensor(cols)
    for r, i in rows.items():
        new.weight[r] = 0.0
        new.weight[r, index] = old.weight[i]
        new.bias[r] = old.bias[i]


@torch.no_grad()
def expand_vae(vae: AutoencoderKL, channels: int, *, seed: int = 0) -> AutoencoderKL:
    """A new ``AutoencoderKL`` with a ``channels``-channel latent, initialised from ``vae`` (module docstring)."""
    old = int(vae.config.latent_channels)
    if channels <= old:
        raise ConfigError(f"the VAE already has a {old}-channel latent, not fewer than {channels}", key="channels")
    torch.manual_seed(seed)  # diffusers initialises from the global generator
    new = build_vae({**vae_config(vae), "latent_channels": channels})
    source = vae.state_dict()
    state = new.state_dict()
    for key, tensor in state.items():
        if key in source and source[key].shape == tensor.shape:
            tensor.copy_(source[key])
    moments_old = list(range(old)) + list(range(channels, channels + old))  # new rows of the old mean, logvar
    extra_logvar = {channels + k: old + k % old for k in range(old, channels)}  # new row: old logvar row
    enc_old, enc_new = vae.encoder.conv_out, new.encoder.conv_out
    for i, r in enumerate(moments_old):
        enc_new.weight[r] = enc_old.weight[i]
        enc_new.bias[r] = enc_old.bias[i]
    if vae.quant_conv is not None:  # the posterior's moments are quant_conv's output
        _embed_1x1(vae.quant_conv, new.quant_conv, moments_old, moments_old)
        _copy_rows(vae.quant_conv, new.quant_conv, extra_logvar, moments_old)
    else:
        _copy_rows(enc_old, enc_new, extra_logvar, list(range(enc_old.in_channels)))
    if vae.post_quant_conv is not None:
        _embed_1x1(vae.post_quant_conv, new.post_quant_conv, list(range(old)), list(range(old)))
    dec_old, dec_new = vae.decoder.conv_in, new.decoder.conv_in
    dec_new.weight.zero_()
    dec_new.weight[:, :old] = dec_old.weight
    dec_new.bias.copy_(dec_old.bias)
    return new.eval()


@torch.no_grad()
def leading_channels_only(vae: AutoencoderKL, channels: int) -> AutoencoderKL:
    """A copy of ``vae`` whose posterior mean is zero beyond its first ``channels`` latent channels.

    Reconstructing with it measures what an expanded VAE's old subspace carries alone, i.e. how much its extra
    channels add (they add nothing where the copy reconstructs as well as ``vae``).
    """
    latent = int(vae.config.latent_channels)
    if not 0 < channels < latent:
        raise ValueError(f"channels must be between 1 and {latent - 1}, not {channels}")
    restricted = copy.deepcopy(vae)
    moments = restricted.quant_conv if restricted.quant_conv is not None else restricted.encoder.conv_out
    moments.weight[channels:latent] = 0  # rows: the posterior's mean channels, then its log-variances
    moments.bias[channels:latent] = 0
    return restricted.eval()
