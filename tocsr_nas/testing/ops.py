"""The conformance suite every candidate op must pass, on every unit of a teacher it can replace.

A plug-in author runs it on their own op::

    from tocsr_nas.testing import check_op
    check_op("my_block", settings=[{"width": 0.25}, {"width": 0.5}])   # on the shipped tiny-ldm teacher
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tocsr_nas.ops.registry import OpSpec, build_op, get_op
from tocsr_nas.teachers import Teacher, load_teacher
from tocsr_nas.units import UnitInfo, build_unit_graph, unit_infos


@dataclasses.dataclass
class OpBench:
    """A teacher, its example inputs and its units (build once, check many ops)."""

    teacher: Teacher
    inputs: dict[str, Any]
    units: list[UnitInfo]

    @classmethod
    def load(cls, teacher: str | Teacher = "tiny-ldm") -> OpBench:
        teacher = load_teacher(teacher) if isinstance(teacher, str) else teacher
        inputs = teacher.example_inputs()
        return cls(teacher, inputs, unit_infos(build_unit_graph(teacher.unet, inputs)))

    def module(self, unit: UnitInfo) -> nn.Module:
        return self.teacher.unet.get_submodule(unit.path)

    def units_for(self, op: OpSpec) -> list[UnitInfo]:
        return [u for u in self.units if u.kind in op.kinds]


def distinct(units: list[UnitInfo]) -> list[UnitInfo]:
    """One unit per distinct call signature (kind and shapes)."""
    seen: dict[tuple, UnitInfo] = {}
    for unit in units:
        seen.setdefault((unit.kind, unit.in_shape, unit.out_shape, unit.temb_channels, unit.context_shape), unit)
    return list(seen.values())


def unit_inputs(unit: UnitInfo, batch: int = 2) -> dict[str, torch.Tensor]:
    """Random inputs of ``unit``'s call signature."""
    generator = torch.Generator().manual_seed(0)
    args = {"hidden_states": torch.randn(batch, *unit.in_shape, generator=generator)}
    if unit.temb_channels:
        args["temb"] = torch.randn(batch, unit.temb_channels, generator=generator)
    if unit.context_shape:
        args["encoder_hidden_states"] = torch.randn(batch, *unit.context_shape, generator=generator)
    return args


def call_unit(module: nn.Module, unit: UnitInfo, args: dict[str, torch.Tensor]) -> torch.Tensor:
    """Call ``module`` exactly as diffusers' blocks call the unit it replaces."""
    hidden = args["hidden_states"]
    if unit.kind == "resnet":
        return module(hidden, args.get("temb"))
    if unit.kind == "transformer":
        return module(hidden, encoder_hidden_states=args.get("encoder_hidden_states"), cross_attention_kwargs=None,
                      attention_mask=None, encoder_attention_mask=None, return_dict=False)[0]
    return module(hidden)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_op(name: str, *, bench: OpBench | None = None, settings: Sequence[dict[str, Any]] = ({},),
             cheaper: bool = True) -> None:
    """Run every conformance check on the registered op ``name`` with each hyperparameter setting.

    Args:
        name: the registered op.
        bench: the teacher to check on (default: the shipped ``tiny-ldm``).
        settings: hyperparameter settings a search space would use.
        cheaper: also require fewer parameters than the teacher unit (every op except ``teacher``).

    Raises:
        AssertionError: naming the op, the unit and the broken property.
    """
    bench = bench or OpBench.load()
    for hparams in settings:
        check_op_matches_unit_and_trains(bench, name, hparams)
        if cheaper:
            check_op_is_cheaper(bench, name, hparams)
    check_op_is_deterministic(bench, name)
    check_unet_runs_with_every_unit_replaced(bench, name, cheaper=cheaper)


def check_op_matches_unit_and_trains(bench: OpBench, name: str, hparams: dict[str, Any] | None = None) -> None:
    """Output shape = the unit's; diffusers' call conventions; finite, non-zero gradients for trainable weights."""
    op = get_op(name)
    assert bench.units_for(op), f"{name} replaces no unit of the teacher"
    for unit in distinct(bench.units_for(op)):
        torch.manual_seed(0)
        module = build_op(name, unit, bench.module(unit), hparams)
        args = unit_inputs(unit)
        out = call_unit(module, unit, args)
        assert tuple(out.shape) == (2, *unit.out_shape), f"{name}: {unit.path}: output shape {tuple(out.shape)}"
        if unit.kind == "transformer":
            default = module(args["hidden_states"], encoder_hidden_states=args["encoder_hidden_states"])
            assert torch.equal(default.sample, out) and torch.equal(default[0], out), f"{name}: {unit.path}: output"
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            continue
        module.zero_grad()
        out.square().mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params), f"{name}: {unit.path}: grad"
        assert any(p.grad.abs().sum() > 0 for p in params), f"{name}: {unit.path}: all gradients are zero"
        module.zero_grad()


def check_op_is_cheaper(bench: OpBench, name: str, hparams: dict[str, Any] | None = None) -> None:
    """Fewer parameters than the teacher's unit, on every distinct unit."""
    for unit in distinct(bench.units_for(get_op(name))):
        module = build_op(name, unit, bench.module(unit), hparams)
        assert n_params(module) < n_params(bench.module(unit)), f"{name}: {unit.path}: {hparams} is not cheaper"


def check_op_is_deterministic(bench: OpBench, name: str) -> None:
    """The same torch seed builds the same weights."""
    unit = bench.units_for(get_op(name))[-1]
    states = []
    for _ in range(2):
        torch.manual_seed(123)
        states.append(build_op(name, unit, bench.module(unit)).state_dict())
    assert states[0].keys() == states[1].keys(), f"{name}: different weights for the same seed"
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0]), f"{name}: different weights for the same seed"


def check_unet_runs_with_every_unit_replaced(bench: OpBench, name: str, *, cheaper: bool = True) -> None:
    """The whole UNet runs (finite output of the right shape) with the op at every unit it can replace."""
    unet = copy.deepcopy(bench.teacher.unet)
    for unit in bench.units_for(get_op(name)):
        unet.set_submodule(unit.path, build_op(name, unit, unet.get_submodule(unit.path)))
    with torch.no_grad():
        out = unet(**bench.inputs).sample
    assert out.shape == bench.inputs["sample"].shape and torch.isfinite(out).all(), f"{name}: the UNet breaks"
    if cheaper:
        assert n_params(unet) < n_params(bench.teacher.unet), f"{name}: the UNet is not smaller"
