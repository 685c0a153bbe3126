"""MAC and parameter counting: formulas for conv/linear/SDPA, diffusers attention blocks, per-module counts."""
from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn
from torch.nn import functional as F

from tocsr_nas.profiling import (
    MacCount,
    count_macs,
    count_macs_by_module,
    count_macs_by_operator,
    count_macs_ptflops,
    count_params,
    sdpa_macs,
)


class _Sdpa(nn.Module):
    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(query, key, value)


class _ConvLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.linear = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> dict[str, torch.Tensor]:
        y = self.conv(x) * scale
        return {"out": self.linear(y.mean(dim=(2, 3)))}


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _layer_norm(numel: int) -> int:
    return 5 * numel  # fvcore's estimate for an affine norm


def test_sdpa_macs_formula() -> None:
    assert sdpa_macs((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4)) == 2 * 3 * 5 * 7 * (8 + 4)
    assert sdpa_macs((5, 8), (7, 8), (7, 8)) == 5 * 7 * 16
    with pytest.raises(ValueError):
        sdpa_macs((8,), (7, 8), (7, 8))


def test_mac_count_arithmetic() -> None:
    total = MacCount(100, 30) + MacCount(10, 5)
    assert total == MacCount(110, 35)
    assert total.macs_no_attention == 75
    assert total - MacCount(10, 5) == MacCount(100, 30)


def test_count_params_counts_shared_parameters_once() -> None:
    linear = nn.Linear(10, 20)
    assert count_params(linear) == 10 * 20 + 20
    assert count_params(nn.Sequential(linear, linear)) == 220


def test_sdpa_handler_matches_formula() -> None:
    g = _generator()
    q, k, v = (torch.randn(*shape, generator=g) for shape in ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4)))
    count = count_macs(_Sdpa(), (q, k), {"value": v})
    expected = sdpa_macs(q.shape, k.shape, v.shape)
    assert count == MacCount(macs=expected, attention_macs=expected)
    assert count.macs_no_attention == 0


def test_conv_and_linear_formulas_with_kwargs_and_dict_output() -> None:
    x = torch.randn(2, 3, 16, 16, generator=_generator())
    count = count_macs(_ConvLinear(), (x,), {"scale": 0.5})
    conv = 2 * 8 * 16 * 16 * (3 * 3 * 3)  # N * C_out * H * W * (C_in * k * k), bias not counted
    linear = 2 * 8 * 5
    assert count == MacCount(conv + linear, 0)
    by_op = count_macs_by_operator(_ConvLinear(), (x,))
    assert by_op == {"conv": conv, "linear": linear}


def test_ptflops_aten_counts_conv_linear_with_bias_and_misses_sdpa() -> None:
    x = torch.randn(2, 3, 16, 16, generator=_generator())
    conv = 2 * 8 * 16 * 16 * (3 * 3 * 3 + 1)
    linear = 2 * 5 * (8 + 1)
    model = _ConvLinear()
    assert count_macs_ptflops(model, (x,), {"scale": 0.5}) == conv + linear
    assert not any(model.conv._forward_hooks.values())  # no hooks left behind
    assert count_macs_ptflops(model, (x,), backend="pytorch") == conv + linear  # module hooks, biases included
    assert model.training  # ptflops switches to eval; the mode is restored
    q = torch.randn(1, 2, 4, 8, generator=_generator())
    assert count_macs_ptflops(_Sdpa(), (q, q, q)) == 0
    with pytest.raises(ValueError):
        count_macs_ptflops(model, (x,), backend="thop")


def test_diffusers_attention_counts() -> None:
    batch, tokens, dim, heads, head_dim, context_tokens, context_dim = 2, 16, 32, 2, 8, 5, 12
    attention = Attention(query_dim=dim, cross_attention_dim=context_dim, heads=heads, dim_head=head_dim).eval()
    g = _generator()
    hidden = torch.randn(batch, tokens, dim, generator=g)
    context = torch.randn(batch, context_tokens, context_dim, generator=g)
    inner = heads * head_dim
    attention_part = batch * heads * tokens * context_tokens * (head_dim + head_dim)
    linear_part = batch * (tokens * dim * inner + 2 * context_tokens * context_dim * inner + tokens * inner * dim)
    count = count_macs(attention, (hidden,), {"encoder_hidden_states": context})
    assert count == MacCount(linear_part + attention_part, attention_part)


def _tiny_transformer() -> Transformer2DModel:
    torch.manual_seed(0)  # diffusers initialises from the global generator
    return Transformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=16, norm_num_groups=4,
                              cross_attention_dim=12).eval()


def test_transformer2d_total_by_hand() -> None:
    g = _generator()
    sample, context = torch.randn(1, 16, 4, 4, generator=g), torch.randn(1, 5, 12, generator=g)
    n, c, ctx_n, ctx_c, heads, head_dim = 16, 16, 5, 12, 2, 8  # tokens, channels (= inner dim), context
    self_attention = sdpa_macs((1, heads, n, head_dim), (1, heads, n, head_dim), (1, heads, n, head_dim))
    cross_attention = sdpa_macs((1, heads, n, head_dim), (1, heads, ctx_n, head_dim), (1, heads, ctx_n, head_dim))
    no_attention = (
        _layer_norm(n * c)  # group norm
        + n * c * c  # proj_in (1x1 conv)
        + _layer_norm(n * c) + 4 * n * c * c  # norm1 + attn1 q, k, v, out
        + _layer_norm(n * c) + 2 * n * c * c + 2 * ctx_n * ctx_c * c  # norm2 + attn2 q, out and k, v
        + _layer_norm(n * c) + n * c * (2 * 4 * c) + n * (4 * c) * c  # norm3 + GEGLU feed-forward
        + n * c * c  # proj_out (1x1 conv)
    )
    count = count_macs(_tiny_transformer(), (sample,), {"encoder_hidden_states": context, "return_dict": False})
    assert count.attention_macs == self_attention + cross_attention
    assert count.macs_no_attention == no_attention


def test_by_module_matches_whole_and_separates_attention() -> None:
    g = _generator()
    sample, context = torch.randn(1, 16, 4, 4, generator=g), torch.randn(1, 5, 12, generator=g)
    model = _tiny_transformer()
    kwargs = {"encoder_hidden_states": context}
    by_module = count_macs_by_module(model, (sample,), kwargs)
    assert list(by_module) == [name for name, _ in model.named_modules()]
    assert by_module[""] == count_macs(model, (sample,), kwargs)
    block = "transformer_blocks.0"
    assert by_module[f"{block}.attn1"].attention_macs == sdpa_macs((1, 2, 16, 8), (1, 2, 16, 8), (1, 2, 16, 8))
    assert by_module[f"{block}.attn2"].attention_macs == sdpa_macs((1, 2, 16, 8), (1, 2, 5, 8), (1, 2, 5, 8))
    assert by_module[f"{block}.attn1.to_q"] == MacCount(16 * 16 * 16, 0)
    assert by_module[block].attention_macs == by_module[""].attention_macs
    children = ["norm", "proj_in", block, "proj_out"]
    assert sum((by_module[name] for name in children), MacCount(0, 0)) == by_module[""]


def test_tiny_unet_attention_sums_over_attention_modules() -> None:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=8,
    ).eval()
    g = _generator()
    kwargs = {"encoder_hidden_states": torch.randn(1, 3, 16, generator=g)}
    args = (torch.randn(1, 4, 8, 8, generator=g), torch.tensor([10]))
    by_module = count_macs_by_module(unet, args, kwargs)
    attention_modules = [name for name, module in unet.named_modules() if isinstance(module, Attention)]
    assert attention_modules
    assert sum(by_module[name].attention_macs for name in attention_modules) == by_module[""].attention_macs > 0
    ptflops = count_macs_ptflops(unet, args, kwargs)
    # ptflops' aten backend counts conv + matmul with biases and no attention: a little above fvcore's conv + linear.
    by_op = count_macs_by_operator(unet, args, kwargs)
    assert by_op["conv"] + by_op["linear"] < ptflops < 1.05 * (by_op["conv"] + by_op["linear"])
