"""The supernet: the teacher UNet with every searchable unit holding all of its candidates.

``activate(arch)`` selects one path through it; ``extract(arch)`` copies that path out as a standalone
:class:`~tocsr_nas.compact.CompactUNet`. The ``teacher`` candidate of a unit is the teacher's own module.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from search_spaces import SearchSpace

from .arch import Arch
from .compact import CompactUNet, UnitChoice
from .errors import ConfigError
from .ops.builtin.passthrough import drop_output_shape
from .ops.registry import build_op
from .teachers import Teacher
from .units import UnitInfo, build_unit_graph, example_unit_call, unit_infos, unit_output


class ChoiceBlock(nn.Module):
    """The candidates of one unit; calls go to the active one."""

    def __init__(self, labels: list[str], candidates: list[nn.Module]) -> None:
        super().__init__()
        self.labels = list(labels)
        self.candidates = nn.ModuleList(candidates)
        self.active = 0

    def select(self, label: str) -> None:
        self.active = self.labels.index(label)

    @property
    def active_module(self) -> nn.Module:
        return self.candidates[self.active]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.candidates[self.active](*args, **kwargs)


class Supernet(nn.Module):
    """A copy of the teacher UNet in which each unit of ``space`` is a :class:`ChoiceBlock`.

    Building it checks that every candidate accepts its unit's call and returns the unit's output shape.
    """

    def __init__(self, teacher: Teacher, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self.teacher_name = teacher.name
        self.unet = copy.deepcopy(teacher.unet)
        inputs = teacher.example_inputs(latent_size=space.latent_size or teacher.latent_size)
        self.units: dict[str, UnitInfo] = {u.path: u for u in unit_infos(build_unit_graph(self.unet, inputs))}
        self.blocks: dict[str, ChoiceBlock] = {}
        for decision in space.decisions:
            for path in decision.units:
                unit, teacher_module = self.units[path], self.unet.get_submodule(path)
                modules = []
                for candidate in decision.candidates:
                    module = build_op(candidate.op, unit, teacher_module, candidate.kwargs)
                    expected = drop_output_shape(unit) if candidate.op == "drop" else unit.out_shape
                    _check_candidate(module, unit, candidate.label, expected, source=space.source, key=decision.name)
                    modules.append(module)
                block = ChoiceBlock([c.label for c in decision.candidates], modules)
                self.unet.set_submodule(path, block)
                self.blocks[path] = block
        self.active_arch = space.teacher_arch() if all("T" in b.labels for b in self.blocks.values()) else None
        if self.active_arch is not None:
            self.activate(self.active_arch)

    def activate(self, arch: Arch) -> None:
        """Route every unit to the candidate that ``arch`` chooses for it."""
        for path, candidate in self.space.unit_choices(arch).items():
            self.blocks[path].select(candidate.label)
        self.active_arch = arch

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.unet(*args, **kwargs)

    def candidate_module(self, path: str, label: str) -> nn.Module:
        """The module of candidate ``label`` at unit ``path``."""
        block = self.blocks[path]
        return block.candidates[block.labels.index(label)]

    def extract(self, arch: Arch) -> CompactUNet:
        """A standalone compact UNet for ``arch`` (a deep copy: training one later leaves the other alone)."""
        choices = self.space.unit_choices(arch)
        for path, candidate in choices.items():  # plain modules in place of the choice blocks, just for the copy
            self.unet.set_submodule(path, self.candidate_module(path, candidate.label))
        try:
            unet = copy.deepcopy(self.unet)
        finally:
            for path, block in self.blocks.items():
                self.unet.set_submodule(path, block)
        unit_choices = {path: UnitChoice(c.op, c.kwargs, self.units[path]) for path, c in choices.items()}
        meta = {"arch": str(arch), "arch_id": arch.arch_id, "space": self.space.name, "teacher": self.teacher_name}
        return CompactUNet.wrap(unet, unit_choices, meta).eval()


@torch.no_grad()
def _check_candidate(module: nn.Module, unit: UnitInfo, label: str, expected: tuple[int, int, int], *, source: str,
                     key: str) -> None:
    """Call ``module`` as diffusers calls ``unit``; refuse an output shape other than ``expected`` in one line."""
    generator = torch.Generator().manual_seed(0)
    args, kwargs = example_unit_call(unit, generator=generator)
    try:
        shape = tuple(unit_output(module(*args, **kwargs)).shape[1:])
    except Exception as err:  # noqa: BLE001 (any failure of a user op is reported the same way)
        raise ConfigError(f"candidate '{label}' fails on unit {unit.path}: {type(err).__name__}: {err}",
                          source=source, key=key) from None
    if shape != expected:
        raise ConfigError(f"candidate '{label}' returns shape {shape}, unit {unit.path} needs {expected}",
                          source=source, key=key)
