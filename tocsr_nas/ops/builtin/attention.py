"""Cheaper replacements for a ``Transformer2DModel``: a light transformer and a linear-attention block."""
from __future__ import annotations

import torch
from diffusers.models.attention import BasicTransformerBlock
from torch import nn

from ...errors import ConfigError
from ...units import UnitInfo
from ..base import TransformerOp
from ..registry import register_op
from ._common import copy_matching, divisor_groups, require_bool, require_float, require_int


def _check_heads(unit: UnitInfo, heads: object) -> int:
    channels = unit.in_channels
    divisors = [d for d in range(1, channels + 1) if channels % d == 0]
    return require_int(unit, "heads", heads, allowed=divisors)


def _teacher_heads(teacher: nn.Module, channels: int) -> int:
    """The heads of the teacher's first self-attention when they divide ``channels``; 1 otherwise."""
    blocks = getattr(teacher, "transformer_blocks", None)
    heads = getattr(getattr(blocks[0], "attn1", None), "heads", 1) if blocks else 1
    return heads if isinstance(heads, int) and heads > 0 and channels % heads == 0 else 1


def _norm_groups(unit: UnitInfo, teacher: nn.Module) -> int:
    norm = getattr(teacher, "norm", None)
    if isinstance(norm, nn.GroupNorm) and norm.num_channels == unit.in_channels:
        return norm.num_groups
    return divisor_groups(unit.in_channels)


class LightTransformer(TransformerOp):
    """One diffusers ``BasicTransformerBlock`` with a GELU feed-forward between GroupNorm/1x1 projections.

    Module names follow ``Transformer2DModel`` (``norm``, ``proj_in``, ``transformer_blocks.0``, ``proj_out``)
    so the teacher's weights load by name.

    Args:
        channels: ``C`` of ``hidden_states (B, C, H, W)``; also the attention width.
        heads: attention heads (``C`` divisible by it).
        ff_inner: feed-forward hidden width.
        context_dim: ``D`` of ``encoder_hidden_states (B, L, D)`` for cross-attention; ``None`` for none.
        groups: GroupNorm groups.
    """

    def __init__(self, channels: int, heads: int, ff_inner: int, context_dim: int | None, groups: int) -> None:
        super().__init__()
        self.cross_attention = context_dim is not None
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(
            channels, heads, channels // heads, cross_attention_dim=context_dim, activation_fn="gelu",
            ff_inner_dim=ff_inner)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def block(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None) -> torch.Tensor:
        batch, channels, height, width = hidden_states.shape
        h = self.proj_in(self.norm(hidden_states))
        h = h.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        context = encoder_hidden_states if self.cross_attention else None
        for block in self.transformer_blocks:
            h = block(h, encoder_hidden_states=context)
        h = h.reshape(batch, height, width, channels).permute(0, 3, 1, 2)
        return hidden_states + self.proj_out(h)


@register_op("light_transformer", kinds={"transformer"}, short="lite")
def light_transformer(unit: UnitInfo, teacher: nn.Module, *, heads: int | None = None, ff_mult: float = 2.0,
                      cross_attention: bool = True, from_teacher: bool = True) -> nn.Module:
    """A one-block transformer with a GELU feed-forward of width ``ff_mult * C`` (the teacher's heads by default).

    With ``from_teacher`` it starts from the teacher's norms, projections and attention weights wherever the
    shapes match (the feed-forward, whose activation differs, starts fresh).
    """
    heads = _check_heads(unit, _teacher_heads(teacher, unit.in_channels) if heads is None else heads)
    ff_mult = require_float(unit, "ff_mult", ff_mult, low=0.0)
    cross_attention = require_bool(unit, "cross_attention", cross_attention)
    from_teacher = require_bool(unit, "from_teacher", from_teacher)
    if cross_attention and unit.context_shape is None:
        raise ConfigError("cross_attention needs a unit that receives encoder_hidden_states", key=unit.path,
                          allowed=[False])
    context_dim = unit.context_shape[1] if cross_attention else None
    op = LightTransformer(unit.in_channels, heads, max(1, round(ff_mult * unit.in_channels)), context_dim,
                          _norm_groups(unit, teacher))
    if from_teacher:
        copy_matching(op, teacher, skip=("transformer_blocks.0.ff.",))
    return op


class LinearAttention(TransformerOp):
    """Efficient (linear) self-attention (Shen et al., 2021) with a residual; ignores ``encoder_hidden_states``.

    Queries are soft-maxed over features, keys over positions, and the ``(d, d)`` context ``K^T V`` of each
    head is applied to the queries, so the cost is linear in the number of positions.

    Args:
        channels: ``C`` of ``hidden_states (B, C, H, W)``.
        heads: heads (``C`` divisible by it).
        groups: GroupNorm groups.
    """

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.to_qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def block(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None) -> torch.Tensor:
        batch, channels, height, width = hidden_states.shape
        qkv = self.to_qkv(self.norm(hidden_states))
        q, k, v = qkv.reshape(batch, 3, self.heads, channels // self.heads, height * width).unbind(dim=1)
        q = q.softmax(dim=-2)  # over features
        k = k.softmax(dim=-1)  # over positions
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q).reshape(batch, channels, height, width)
        return hidden_states + self.proj_out(out)


@register_op("linear_attention", kinds={"transformer"}, short="lin")
def linear_attention(unit: UnitInfo, teacher: nn.Module, *, heads: int = 1) -> nn.Module:
    """A linear-attention block with ``heads`` heads (no cross-attention)."""
    return LinearAttention(unit.in_channels, _check_heads(unit, heads), _norm_groups(unit, teacher))
