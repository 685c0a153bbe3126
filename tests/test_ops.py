"""Every registered op passes the conformance suite (:mod:`tocsr_nas.testing.ops`) on tiny-ldm, plus the built-ins'
specifics."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from tocsr_nas.errors import ConfigError
from tocsr_nas.ops import OpSpec, ResnetOp, build_op, get_op, register_op, registered_ops, registry
from tocsr_nas.ops.registry import OPS as OPS_REGISTRY
from tocsr_nas.testing import OpBench, check_op
from tocsr_nas.testing import ops as suite
from tocsr_nas.testing.ops import call_unit, n_params, unit_inputs
from tocsr_nas.units import UnitInfo

OPS = sorted(registered_ops())
# Ops that fit every unit of their kinds; `drop` removes a unit only where that is possible and changes a sampler's
# resolution (tests/test_removal.py covers it).
UNIVERSAL = [n for n in OPS if n != "drop"]
# Hyperparameter settings a search space would use; every one must stay cheaper than the teacher.
SETTINGS = {
    "slim_resnet": [{"width": 0.25}, {"width": 0.5}, {"width": 0.75, "from_teacher": False}],
    "dws_resnet": [{"expansion": e, "kernel": k} for e in (1, 2, 4) for k in (3, 5)],
    "light_transformer": [{"heads": h, "ff_mult": f, "cross_attention": c}
                          for h in (1, 4) for f in (1, 2, 4) for c in (True, False)],
    "linear_attention": [{"heads": 1}, {"heads": 4}],
}


@pytest.fixture(scope="module")
def bench() -> OpBench:
    return OpBench.load("tiny-ldm")


@pytest.fixture(scope="module")
def tiny(bench: OpBench):
    return bench.teacher, bench.inputs, bench.units


def _module(teacher, unit: UnitInfo) -> nn.Module:
    return teacher.unet.get_submodule(unit.path)


def _units(units: list[UnitInfo], op: OpSpec) -> list[UnitInfo]:
    return [u for u in units if u.kind in op.kinds]


def test_builtins_registered_with_unique_short_labels():
    ops = registered_ops()
    assert {"teacher", "identity", "slim_resnet", "dws_resnet", "light_transformer", "linear_attention"} <= set(ops)
    shorts = [op.short for op in ops.values()]
    assert len(shorts) == len(set(shorts))
    assert ops["teacher"].kinds == frozenset(registry.UNIT_KINDS)


@pytest.mark.parametrize("name", UNIVERSAL)
def test_op_matches_unit_shape_and_trains(bench, name):
    suite.check_op_matches_unit_and_trains(bench, name)


@pytest.mark.parametrize("name", [n for n in UNIVERSAL if n != "teacher"])
def test_op_is_cheaper_than_teacher(bench, name):
    for hparams in SETTINGS.get(name, [{}]):
        suite.check_op_is_cheaper(bench, name, hparams)


@pytest.mark.parametrize("name", [n for n in OPS if n != "teacher"])
def test_op_is_deterministic_given_seed(bench, name):
    suite.check_op_is_deterministic(bench, name)


def test_teacher_op_shares_the_module(tiny):
    teacher, _, units = tiny
    for unit in units:
        assert build_op("teacher", unit, _module(teacher, unit)) is _module(teacher, unit)


def test_identity_is_exact_passthrough(tiny):
    teacher, _, units = tiny
    projected = 0
    for unit in _units(units, get_op("identity")):
        module = build_op("identity", unit, _module(teacher, unit))
        args = unit_inputs(unit)
        if unit.in_shape == unit.out_shape:
            assert n_params(module) == 0
            assert torch.equal(call_unit(module, unit, args), args["hidden_states"]), unit.path
        else:
            projected += 1
            shortcut = _module(teacher, unit).conv_shortcut
            assert torch.equal(module.proj.weight, shortcut.weight), unit.path
    assert projected > 0


def test_slim_resnet_slices_teacher_weights(tiny):
    teacher, _, units = tiny
    unit = next(u for u in units if u.kind == "resnet" and u.in_channels != u.out_channels)
    source = _module(teacher, unit)
    module = build_op("slim_resnet", unit, source, {"width": 0.25})
    keep = module.kept_channels
    assert module.conv1.out_channels == len(keep) == unit.out_channels // 4
    assert module.conv1.out_channels % module.norm2.num_groups == 0
    assert torch.equal(module.conv1.weight, source.conv1.weight[keep])
    assert torch.equal(module.conv2.weight, source.conv2.weight[:, keep])
    assert torch.equal(module.time_emb_proj.bias, source.time_emb_proj.bias[keep])
    assert torch.equal(module.norm2.weight, source.norm2.weight[keep])
    assert torch.equal(module.conv_shortcut.weight, source.conv_shortcut.weight)
    fresh = build_op("slim_resnet", unit, source, {"width": 0.25, "from_teacher": False})
    assert fresh.kept_channels is None
    assert not torch.equal(fresh.conv1.weight, source.conv1.weight[:fresh.conv1.out_channels])


def test_slim_resnet_small_width_uses_fewer_groups(tiny):
    teacher, _, units = tiny
    unit = next(u for u in units if u.kind == "resnet" and u.out_channels == 64)
    module = build_op("slim_resnet", unit, _module(teacher, unit), {"width": 0.125})
    assert module.conv1.out_channels == 8 and module.norm2.num_groups == 4


def test_dws_resnet_starts_as_its_shortcut(tiny):
    teacher, _, units = tiny
    unit = next(u for u in units if u.kind == "resnet" and u.in_channels == u.out_channels)
    module = build_op("dws_resnet", unit, _module(teacher, unit), {"expansion": 4, "kernel": 5})
    args = unit_inputs(unit)
    assert torch.equal(call_unit(module, unit, args), args["hidden_states"])
    assert module.depthwise.kernel_size == (5, 5) and module.depthwise.out_channels == 4 * unit.out_channels


def test_light_transformer_copies_teacher_weights(tiny):
    teacher, _, units = tiny
    unit = next(u for u in units if u.kind == "transformer")
    source = _module(teacher, unit)
    module = build_op("light_transformer", unit, source, {"heads": 2, "ff_mult": 1})
    block, teacher_block = module.transformer_blocks[0], source.transformer_blocks[0]
    assert block.attn1.heads == 2
    assert torch.equal(block.attn1.to_q.weight, teacher_block.attn1.to_q.weight)
    assert torch.equal(block.attn2.to_k.weight, teacher_block.attn2.to_k.weight)
    assert torch.equal(module.proj_in.weight, source.proj_in.weight)
    assert torch.equal(module.norm.bias, source.norm.bias)
    assert block.ff.net[-1].in_features == unit.in_channels
    self_only = build_op("light_transformer", unit, source, {"cross_attention": False, "from_teacher": False})
    assert self_only.transformer_blocks[0].attn2 is None
    assert not torch.equal(self_only.proj_in.weight, source.proj_in.weight)


def test_light_transformer_defaults_to_teacher_heads(tiny):
    teacher, _, units = tiny
    unit = next(u for u in units if u.kind == "transformer")
    module = build_op("light_transformer", unit, _module(teacher, unit))
    assert module.transformer_blocks[0].attn1.heads == _module(teacher, unit).transformer_blocks[0].attn1.heads


@pytest.mark.parametrize(("name", "hparams"), [
    ("slim_resnet", {"width": 0}),
    ("slim_resnet", {"width": 1.5}),
    ("slim_resnet", {"width": "half"}),
    ("slim_resnet", {"from_teacher": "yes"}),
    ("slim_resnet", {"depth": 2}),
    ("dws_resnet", {"expansion": 0}),
    ("dws_resnet", {"kernel": 4}),
    ("dws_resnet", {"expansion": 1.5}),
    ("light_transformer", {"heads": 3}),
    ("light_transformer", {"ff_mult": 0}),
    ("light_transformer", {"cross_attention": 1}),
    ("linear_attention", {"heads": 5}),
    ("linear_attention", {"heads": 0}),
    ("identity", {"width": 1}),
])
def test_bad_hyperparameters_raise_config_error(tiny, name, hparams):
    teacher, _, units = tiny
    unit = _units(units, get_op(name))[0]
    with pytest.raises(ConfigError, match=unit.path.replace(".", r"\.")):
        build_op(name, unit, _module(teacher, unit), hparams)


def test_wrong_kind_and_missing_context_raise(tiny):
    teacher, _, units = tiny
    transformer = next(u for u in units if u.kind == "transformer")
    with pytest.raises(ConfigError, match="cannot replace a transformer"):
        build_op("slim_resnet", transformer, _module(teacher, transformer))
    with pytest.raises(ConfigError, match="unknown op"):
        build_op("no_such_op", transformer, _module(teacher, transformer))
    no_context = dataclasses.replace(transformer, context_shape=None)
    with pytest.raises(ConfigError, match="cross_attention"):
        build_op("light_transformer", no_context, _module(teacher, transformer))
    module = build_op("light_transformer", no_context, _module(teacher, transformer), {"cross_attention": False})
    assert module.transformer_blocks[0].attn2 is None


def test_user_op_via_decorator(bench):
    class Scale(ResnetOp):
        def __init__(self, in_channels: int, out_channels: int, gain: float) -> None:
            super().__init__()
            self.proj = nn.Conv2d(in_channels, out_channels, 1)
            self.gain = gain

        def block(self, hidden_states, temb):
            return self.gain * self.proj(hidden_states)

    with OPS_REGISTRY.scoped():

        @register_op("user_scale", kinds={"resnet"}, short="us")
        def user_scale(unit, teacher, *, gain: float = 1.0):
            return Scale(unit.in_channels, unit.out_channels, gain)

        assert get_op("user_scale").hparams == {"gain": 1.0}
        unit = next(u for u in bench.units if u.kind == "resnet")
        module = build_op("user_scale", unit, bench.module(unit), {"gain": 2.0})
        assert module.gain == 2.0
        assert tuple(call_unit(module, unit, unit_inputs(unit)).shape) == (2, *unit.out_shape)
        check_op("user_scale", bench=bench, settings=[{"gain": 0.5}])
        with pytest.raises(ConfigError, match="op 'user_scale' is already registered by .*user_scale"):
            register_op("user_scale", kinds={"resnet"})(lambda unit, teacher: None)
    assert "user_scale" not in registered_ops()


def test_check_op_catches_a_wrong_output_shape(bench):
    class Wrong(ResnetOp):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.proj = nn.Conv2d(channels, channels + 1, 1)

        def block(self, hidden_states, temb):
            return self.proj(hidden_states)

    with OPS_REGISTRY.scoped():
        register_op("wrong_shape", kinds={"resnet"})(lambda unit, teacher: Wrong(unit.in_channels))
        with pytest.raises(AssertionError, match="wrong_shape: .*output shape"):
            check_op("wrong_shape", bench=bench)


@pytest.mark.parametrize("name", UNIVERSAL)
def test_unet_runs_with_every_unit_replaced(bench, name):
    suite.check_unet_runs_with_every_unit_replaced(bench, name, cheaper=name != "teacher")


def test_unet_runs_with_a_random_mix_of_ops(tiny):
    teacher, inputs, units = tiny
    generator = torch.Generator().manual_seed(0)
    unet = copy.deepcopy(teacher.unet)
    for unit in units:
        names = [n for n in UNIVERSAL if unit.kind in get_op(n).kinds]
        name = names[int(torch.randint(len(names), (1,), generator=generator))]
        unet.set_submodule(unit.path, build_op(name, unit, unet.get_submodule(unit.path)))
    out = unet(**inputs).sample
    out.square().mean().backward()
    assert out.shape == inputs["sample"].shape
    assert all(p.grad is not None for p in unet.parameters() if p.requires_grad)
