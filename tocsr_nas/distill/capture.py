"""Forward hooks that record what each unit receives and returns during one UNet call.

A recorded call is normalised to :class:`UnitCall` (hidden states, time embedding, context, output), all
detached, so a candidate can be called exactly as diffusers calls the unit it replaces (:func:`call_unit`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..units import UnitInfo, unit_output


@dataclasses.dataclass
class UnitCall:
    """One unit's inputs and output: ``hidden (B, C, H, W)``, ``temb (B, T)`` for resnets, ``context (B, L, D)``
    for transformers, ``output`` (``None`` when only inputs were recorded)."""

    hidden: torch.Tensor
    temb: torch.Tensor | None = None
    context: torch.Tensor | None = None
    output: torch.Tensor | None = None

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """Copies of the non-empty fields as ``{prefix.field: tensor}`` (for safetensors, which refuses shared memory)."""
        return {f"{prefix}.{f.name}": getattr(self, f.name).detach().cpu().clone().contiguous() for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> UnitCall:
        return cls(**{f.name: tensors.get(f"{prefix}.{f.name}") for f in dataclasses.fields(cls)})


def _keep(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """Detached and in the default memory format (channels-last inputs crash some CPU backward kernels)."""
    return None if tensor is None else tensor.detach().contiguous()


def _normalise(kind: str, args: tuple, kwargs: dict[str, Any], output: object | None) -> UnitCall:
    call = UnitCall(hidden=_keep(args[0] if args else kwargs["hidden_states"]))
    if kind == "resnet":
        call.temb = _keep(args[1] if len(args) > 1 else kwargs.get("temb"))
    elif kind == "transformer":
        call.context = _keep(kwargs.get("encoder_hidden_states"))
    if output is not None:
        call.output = _keep(unit_output(output))
    return call


@contextmanager
def capture_units(unet: nn.Module, units: Iterable[UnitInfo], *, outputs: bool = True) -> Iterator[dict[str, UnitCall]]:
    """Record every call of ``units`` (looked up by path in ``unet``) while the block runs.

    Yields the dict it fills: unit path -> :class:`UnitCall` of the latest call.
    """
    records: dict[str, UnitCall] = {}
    handles = []

    def hook(unit: UnitInfo):
        def record(module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
            records[unit.path] = _normalise(unit.kind, args, kwargs, output if outputs else None)

        return record

    for unit in units:
        handles.append(unet.get_submodule(unit.path).register_forward_hook(hook(unit), with_kwargs=True))
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def call_unit(module: nn.Module, kind: str, call: UnitCall) -> torch.Tensor:
    """Call ``module`` in a unit's place on the recorded inputs of ``call``; returns the output tensor."""
    if kind == "resnet":
        return unit_output(module(call.hidden, call.temb))
    if kind == "transformer":
        return unit_output(module(call.hidden, encoder_hidden_states=call.context, return_dict=False))
    return unit_output(module(call.hidden))


__all__ = ["UnitCall", "call_unit", "capture_units"]
