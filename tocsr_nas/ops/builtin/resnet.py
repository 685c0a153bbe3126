"""Cheaper replacements for a ``ResnetBlock2D``: a channel-slimmed copy and a depthwise-separable block."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...units import UnitInfo
from ..base import ResnetOp
from ..registry import register_op
from ._common import (
    copy_matching,
    divisor_groups,
    group_count,
    require_bool,
    require_float,
    require_int,
    teacher_groups,
)


class SlimResnet(ResnetOp):
    """A ``ResnetBlock2D`` with a narrower inner width: GroupNorm-SiLU-conv3x3, +temb, GroupNorm-SiLU-conv3x3.

    Args:
        in_channels: input channels ``C_in`` of ``hidden_states (B, C_in, H, W)``.
        out_channels: output channels ``C_out``.
        inner_channels: width between the two convolutions.
        temb_channels: width of ``temb (B, T)``; ``None`` for no time embedding.
        groups: GroupNorm groups of the input norm.
        inner_groups: GroupNorm groups of the inner norm.
        eps: GroupNorm epsilon.
        output_scale_factor: the sum ``shortcut + residual`` is divided by it (as diffusers does).
    """

    def __init__(self, in_channels: int, out_channels: int, inner_channels: int, temb_channels: int | None,
                 groups: int, inner_groups: int, eps: float = 1e-6, output_scale_factor: float = 1.0) -> None:
        super().__init__()
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, inner_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, inner_channels) if temb_channels else None
        self.norm2 = nn.GroupNorm(inner_groups, inner_channels, eps=eps)
        self.conv2 = nn.Conv2d(inner_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.kept_channels: list[int] | None = None  # the teacher's inner channels this block started from

    def block(self, hidden_states: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(hidden_states)))
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = hidden_states if self.conv_shortcut is None else self.conv_shortcut(hidden_states)
        return (shortcut + h) / self.output_scale_factor

    @torch.no_grad()
    def copy_from(self, teacher: nn.Module) -> None:
        """Start from ``teacher``'s weights, keeping the inner channels whose conv1 filters are largest (L1)."""
        conv1 = getattr(teacher, "conv1", None)
        inner = self.conv1.out_channels
        if not isinstance(conv1, nn.Conv2d) or conv1.weight.shape[1:] != self.conv1.weight.shape[1:]:
            return
        scores = conv1.weight.abs().sum(dim=(1, 2, 3))
        keep = torch.topk(scores, min(inner, scores.numel())).indices.sort().values
        if keep.numel() != inner:
            return
        self.kept_channels = keep.tolist()
        if isinstance(getattr(teacher, "norm1", None), nn.GroupNorm):
            copy_matching(self.norm1, teacher.norm1)
        _copy(self.conv1.weight, conv1.weight[keep])
        _copy(self.conv1.bias, conv1.bias[keep] if conv1.bias is not None else None)
        proj = getattr(teacher, "time_emb_proj", None)
        if self.time_emb_proj is not None and isinstance(proj, nn.Linear) \
                and getattr(teacher, "time_embedding_norm", "default") == "default":
            _copy(self.time_emb_proj.weight, proj.weight[keep])
            _copy(self.time_emb_proj.bias, proj.bias[keep] if proj.bias is not None else None)
        norm2 = getattr(teacher, "norm2", None)
        if isinstance(norm2, nn.GroupNorm) and norm2.affine:
            _copy(self.norm2.weight, norm2.weight[keep])
            _copy(self.norm2.bias, norm2.bias[keep])
        conv2 = getattr(teacher, "conv2", None)
        if isinstance(conv2, nn.Conv2d):
            _copy(self.conv2.weight, conv2.weight[:, keep])
            _copy(self.conv2.bias, conv2.bias)
        shortcut = getattr(teacher, "conv_shortcut", None)
        if self.conv_shortcut is not None and isinstance(shortcut, nn.Module):
            copy_matching(self.conv_shortcut, shortcut)


def _copy(dst: torch.Tensor | None, src: torch.Tensor | None) -> None:
    if dst is not None and src is not None and dst.shape == src.shape:
        dst.copy_(src)


@register_op("slim_resnet", kinds={"resnet"}, short="slim")
def slim_resnet(unit: UnitInfo, teacher: nn.Module, *, width: float = 0.5, from_teacher: bool = True) -> nn.Module:
    """A resnet whose inner width is ``width * out_channels`` (rounded to a multiple of its GroupNorm groups)."""
    width = require_float(unit, "width", width, low=0.0, high=1.0)
    from_teacher = require_bool(unit, "from_teacher", from_teacher)
    target = width * unit.out_channels
    inner_groups = group_count(target, teacher_groups(getattr(teacher, "norm2", None)))
    inner = min(unit.out_channels, max(inner_groups, round(target / inner_groups) * inner_groups))
    if inner % inner_groups:  # capped at an output width that the groups do not divide
        inner_groups = divisor_groups(inner, inner_groups)
    norm1 = getattr(teacher, "norm1", None)
    groups = teacher_groups(norm1) if isinstance(norm1, nn.GroupNorm) and norm1.num_channels == unit.in_channels \
        else divisor_groups(unit.in_channels)
    op = SlimResnet(unit.in_channels, unit.out_channels, inner, unit.temb_channels, groups, inner_groups,
                    eps=getattr(norm1, "eps", 1e-6), output_scale_factor=getattr(teacher, "output_scale_factor", 1.0))
    if from_teacher:
        op.copy_from(teacher)
    return op


class DwsResnet(ResnetOp):
    """An inverted-bottleneck residual block: 1x1 expand (+temb), depthwise kxk, 1x1 project, plus a shortcut.

    The time embedding is projected to the input width and added before the linear expansion, which equals
    adding ``expand.weight @ proj(temb)`` after it at ``T * C_in`` instead of ``T * hidden`` parameters.
    The last 1x1 projection is zero-initialised so the block starts as its shortcut.

    Args:
        in_channels: input channels ``C_in`` of ``hidden_states (B, C_in, H, W)``.
        out_channels: output channels ``C_out``.
        hidden_channels: width of the depthwise convolution.
        temb_channels: width of ``temb (B, T)``; ``None`` for no time embedding.
        kernel: depthwise kernel size (odd).
        groups: GroupNorm groups of the input norm.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int, temb_channels: int | None,
                 kernel: int, groups: int) -> None:
        super().__init__()
        hidden_groups = divisor_groups(hidden_channels)
        self.norm_in = nn.GroupNorm(groups, in_channels, eps=1e-6)
        self.time_emb_proj = nn.Linear(temb_channels, in_channels) if temb_channels else None
        self.expand = nn.Conv2d(in_channels, hidden_channels, 1)
        self.norm1 = nn.GroupNorm(hidden_groups, hidden_channels, eps=1e-6)
        self.depthwise = nn.Conv2d(hidden_channels, hidden_channels, kernel, padding=kernel // 2,
                                   groups=hidden_channels)
        self.norm2 = nn.GroupNorm(hidden_groups, hidden_channels, eps=1e-6)
        self.project = nn.Conv2d(hidden_channels, out_channels, 1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def block(self, hidden_states: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        h = self.norm_in(hidden_states)
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = F.silu(self.norm1(self.expand(h)))
        h = F.silu(self.norm2(self.depthwise(h)))
        shortcut = hidden_states if self.conv_shortcut is None else self.conv_shortcut(hidden_states)
        return shortcut + self.project(h)


@register_op("dws_resnet", kinds={"resnet"}, short="dws")
def dws_resnet(unit: UnitInfo, teacher: nn.Module, *, expansion: int = 2, kernel: int = 3,
               from_teacher: bool = True) -> nn.Module:
    """A depthwise-separable block of hidden width ``expansion * out_channels``; the shortcut starts from the
    teacher's when ``from_teacher``."""
    expansion = require_int(unit, "expansion", expansion)
    kernel = require_int(unit, "kernel", kernel, allowed=(1, 3, 5, 7, 9))
    from_teacher = require_bool(unit, "from_teacher", from_teacher)
    op = DwsResnet(unit.in_channels, unit.out_channels, expansion * unit.out_channels, unit.temb_channels, kernel,
                   divisor_groups(unit.in_channels, teacher_groups(getattr(teacher, "norm1", None))))
    shortcut = getattr(teacher, "conv_shortcut", None)
    if from_teacher and op.conv_shortcut is not None and isinstance(shortcut, nn.Module):
        copy_matching(op.conv_shortcut, shortcut)
    return op
