"""SR adaptation: give a latent-diffusion UNet the LR image's latent as extra, zero-initialised input channels.

The adapted network takes ``noisy HR latent ++ LR latent`` (``2 x latent_channels`` in) and keeps the UNet's
output. Only ``conv_in`` changes: it is replaced by a wider convolution whose weights for the new channels are
zero, so at step 0 the adapted model computes exactly what the original did. This works for a diffusers
``UNet2DConditionModel`` and for a :class:`~tocsr_nas.compact.CompactUNet` (which is one) alike.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def widen_conv_in(unet: nn.Module, extra_channels: int) -> None:
    """Replace ``conv_in`` in place by one taking ``extra_channels`` more inputs, their weights zero.

    The UNet's config keeps its original ``in_channels``; the SR model folder records ``lr_channels``.
    """
    old: nn.Conv2d = unet.conv_in
    new = nn.Conv2d(old.in_channels + extra_channels, old.out_channels, old.kernel_size, stride=old.stride,
                    padding=old.padding, dilation=old.dilation, bias=old.bias is not None,
                    dtype=old.weight.dtype, device=old.weight.device)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :old.in_channels] = old.weight
        if old.bias is not None:
            new.bias.copy_(old.bias)
    unet.conv_in = new


class SRUNet(nn.Module):
    """An adapted UNet with its own (trainable) context: ``(sample, lr_latent, timestep) -> latent``.

    Args:
        unet: a UNet whose ``conv_in`` was widened by :func:`widen_conv_in` (``UNet2DConditionModel`` or
            ``CompactUNet``).
        context: the ``(length, dim)`` encoder hidden states every call uses (the teacher's learned context).
    """

    def __init__(self, unet: nn.Module, context: torch.Tensor) -> None:
        super().__init__()
        self.unet = unet
        self.context = nn.Parameter(context.detach().clone().reshape(-1, context.shape[-1]))

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    def forward(self, sample: torch.Tensor, lr_latent: torch.Tensor, timestep: torch.Tensor | int) -> torch.Tensor:
        """The UNet's output for ``sample`` conditioned on ``lr_latent`` (same spatial size)."""
        context = self.context.unsqueeze(0).expand(len(sample), -1, -1)
        return self.unet(torch.cat([sample, lr_latent], dim=1), timestep, encoder_hidden_states=context).sample


def adapt_unet(unet: nn.Module, context: torch.Tensor) -> SRUNet:
    """A copy of ``unet`` adapted to take the LR latent (as many channels as the latent) as extra input."""
    adapted = copy.deepcopy(unet)
    widen_conv_in(adapted, int(adapted.config.in_channels))
    return SRUNet(adapted, context)


__all__ = ["SRUNet", "adapt_unet", "widen_conv_in"]
