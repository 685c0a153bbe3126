"""The two trivial ops: ``teacher`` keeps the unit, ``identity`` skips it."""
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
