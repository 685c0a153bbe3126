"""Compact UNets: a teacher UNet with some units replaced by candidate ops, saved and loaded on its own.

A :class:`CompactUNet` keeps the diffusers calling convention (``unet(sample, timestep, encoder_hidden_states)
.sample``) and saves as ``compact_unet.json`` (the UNet config, the op and hyperparameters of every replaced unit
and its recorded shapes) plus ``model.safetensors``. Loading rebuilds the structure from that JSON alone.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .atomic import atomic_folder
from .config_io import read_folder_config
from .errors import ConfigError
from .ops.registry import build_op
from .units import UnitInfo

FORMAT = "tocsr-nas/compact-unet"
FORMAT_VERSION = 1
CONFIG_NAME = "compact_unet.json"
WEIGHTS_NAME = "model.safetensors"


@dataclasses.dataclass(frozen=True)
class UnitChoice:
    """What replaces one unit: an op, its hyperparameters, and the unit's recorded shapes."""

    op: str
    hparams: dict[str, Any]
    unit: UnitInfo

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "hparams": self.hparams, "unit": dataclasses.asdict(self.unit)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UnitChoice:
        unit = dict(data["unit"])
        for key in ("in_shape", "out_shape", "context_shape"):
            if unit.get(key) is not None:
                unit[key] = tuple(unit[key])
        return cls(op=data["op"], hparams=dict(data["hparams"]), unit=UnitInfo(**unit))


class CompactUNet(nn.Module):
    """A UNet whose units were replaced as described by ``choices``; behaves like the diffusers UNet."""

    def __init__(self, unet: UNet2DConditionModel, choices: Mapping[str, UnitChoice], meta: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.unet = unet
        self.choices = dict(choices)
        self.meta = dict(meta or {})  # free-form provenance: arch string, space, teacher

    @classmethod
    def build(cls, teacher_unet: UNet2DConditionModel, choices: Mapping[str, UnitChoice],
              meta: Mapping[str, Any] | None = None) -> CompactUNet:
        """Copy ``teacher_unet`` and put a freshly built op at each unit of ``choices``.

        The copy shares no parameters with ``teacher_unet``; ``teacher`` choices keep a copy of the teacher's unit.
        """
        unet = copy.deepcopy(teacher_unet)
        for path, choice in choices.items():
            unet.set_submodule(path, build_op(choice.op, choice.unit, unet.get_submodule(path), choice.hparams))
        return cls(unet, choices, meta)

    @property
    def config(self) -> Any:
        """The underlying diffusers UNet config (schedulers and pipelines read ``in_channels`` etc.)."""
        return self.unet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.unet(*args, **kwargs)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the config JSON and safetensors weights atomically (a temp folder renamed into place)."""
        config = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "unet_config": {k: v for k, v in dict(self.unet.config).items() if not k.startswith("_")},
            "choices": {path: choice.to_json() for path, choice in self.choices.items()},
            "meta": self.meta,
        }
        with atomic_folder(folder) as tmp:
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=list))
            state = {k: v.detach().contiguous() for k, v in self.unet.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": FORMAT})
        return Path(folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> CompactUNet:
        """Load a folder written by :meth:`save_pretrained` (never executes code from it)."""
        folder = Path(folder)
        config = read_folder_config(folder, CONFIG_NAME, what="a compact UNet", format=FORMAT, version=FORMAT_VERSION)
        choices = {path: UnitChoice.from_json(c) for path, c in config["choices"].items()}
        compact = cls.build(UNet2DConditionModel(**config["unet_config"]), choices, meta=config.get("meta"))
        weights = folder / WEIGHTS_NAME
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError, FileNotFoundError) as err:
            raise ConfigError(f"cannot read weights ({err})", source=weights) from None
        try:
            compact.unet.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ConfigError(f"weights do not match the config ({str(err).splitlines()[0]})", source=weights) from None
        return compact.eval()
