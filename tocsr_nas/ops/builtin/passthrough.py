"""The trivial ops: ``teacher`` keeps the unit, ``identity`` skips it, ``drop`` removes it as BK-SDM does.

``identity`` keeps the unit's shapes (an up-block resnet still consumes its skip tensor, through a 1x1 projection);
``drop`` removes the unit outright, with no parameters: a removed up-block resnet discards the skip tensor that
diffusers concatenated to its input, and a removed down/up sampler keeps the resolution. With a removed down-block
resnet (whose skip output then repeats the previous one) and its up-block partner, the computation is exactly
that of a diffusers UNet with one layer fewer per block (BK-SDM); see ``search_spaces/sd15_bk.yaml``.
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from ...units import UnitInfo
from ..base import ResnetOp, TransformerOp
from ..registry import UNIT_KINDS, register_op
from ._common import copy_matching


@register_op("teacher", kinds=UNIT_KINDS, short="T")
def teacher_op(unit: UnitInfo, teacher: nn.Module) -> nn.Module:
    """The teacher's own module (shared, not copied)."""
    return teacher


class IdentityResnet(ResnetOp):
    """Skips a resnet unit: a passthrough, or a 1x1 conv when the channel count changes.

    Args:
        in_channels: channels of ``hidden_states`` ``(B, in_channels, H, W)``.
        out_channels: channels of the output ``(B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def block(self, hidden_states: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        return hidden_states if self.proj is None else self.proj(hidden_states)


class IdentityTransformer(TransformerOp):
    """Skips a transformer unit: returns ``hidden_states`` unchanged."""

    def block(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None) -> torch.Tensor:
        return hidden_states


@register_op("identity", kinds={"resnet", "transformer"}, short="I")
def identity_op(unit: UnitInfo, teacher: nn.Module) -> nn.Module:
    """Skip the unit; a channel-changing resnet keeps a 1x1 projection (the teacher's shortcut when it has one)."""
    if unit.kind == "transformer":
        if unit.in_shape != unit.out_shape:
            raise ConfigError(f"cannot skip a transformer that maps {unit.in_shape} to {unit.out_shape}", key=unit.path)
        return IdentityTransformer()
    op = IdentityResnet(unit.in_channels, unit.out_channels)
    shortcut = getattr(teacher, "conv_shortcut", None)
    if op.proj is not None and isinstance(shortcut, nn.Module):
        copy_matching(op.proj, shortcut)
    return op


class DropResnet(ResnetOp):
    """Removes a resnet unit: passes on the first ``keep`` channels of its input (all of them when ``None``).

    In an up block the input is ``cat([hidden, skip])``; keeping ``hidden``'s channels drops the skip tensor.
    """

    def __init__(self, keep: int | None = None) -> None:
        super().__init__()
        self.keep = keep

    def block(self, hidden_states: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        return hidden_states if self.keep is None else hidden_states[:, :self.keep]


class DropSampler(nn.Module):
    """Removes a down/up sampler: returns ``hidden_states`` at the same resolution (any extra arguments ignored)."""

    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return hidden_states


SAMPLER_KINDS = ("downsampler", "upsampler")


def drop_output_shape(unit: UnitInfo) -> tuple[int, int, int]:
    """The output shape of ``drop`` at ``unit``: a removed sampler keeps its input resolution."""
    return unit.in_shape if unit.kind in SAMPLER_KINDS else unit.out_shape


@register_op("drop", kinds=UNIT_KINDS, short="X")
def drop_op(unit: UnitInfo, teacher: nn.Module) -> nn.Module:
    """Remove the unit (no parameters): an up-block resnet drops its skip input, a sampler keeps the resolution.

    A resnet can be removed only where its input (without the skip tensor) already has its output's channels.
    """
    if unit.kind == "transformer":
        return IdentityTransformer()
    if unit.kind in SAMPLER_KINDS:
        return DropSampler()
    hidden = unit.in_channels - (unit.skip_channels or 0)
    if hidden != unit.out_channels:
        skip = f" + {unit.skip_channels} skip" if unit.skip_channels else ""
        raise ConfigError(f"cannot drop resnet {unit.path}: it maps {hidden}{skip} to {unit.out_channels} channels",
                          key=unit.path, allowed="resnets whose input (without the skip) has their output's channels")
    return DropResnet(keep=hidden if unit.skip_channels else None)
