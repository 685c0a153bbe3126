"""Compact UNets: a teacher UNet with some units replaced by candidate ops, saved and loaded on its own.

A :class:`CompactUNet` is a diffusers ``UNet2DConditionModel`` (``ModelMixin`` + ``ConfigMixin``): its constructor
arguments are its saved config (the UNet's, plus the op, hyperparameters and recorded shapes of every replaced
unit, free-form ``meta``, and the plug-ins its ops came from), so ``save_pretrained``/``from_pretrained`` write and
read a plain diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors``), also as the ``unet/`` of
a ``StableDiffusionPipeline``. Loading rebuilds the structure from the config alone and never runs code: an op
from a plug-in that is not loaded is a one-line error naming the plug-in to pass with ``--plugins``. Folders in
the earlier format (``compact_unet.json`` + ``model.safetensors``) still load.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import ModelMixin, UNet2DConditionModel  # noqa: F401  (a pipeline's loader finds ModelMixin here)
from safetensors import SafetensorError
from torch import nn

from .atomic import atomic_folder, read_safetensors
from .config_io import read_folder_config, read_mapping
from .errors import ConfigError
from .ops.registry import OPS, build_op
from .units import UnitInfo

CONFIG_NAME = "config.json"
LEGACY_FORMAT = "tocsr-nas/compact-unet"
LEGACY_CONFIG_NAME = "compact_unet.json"
LEGACY_WEIGHTS_NAME = "model.safetensors"


def is_compact_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a saved compact UNet (this format or the earlier one)."""
    for name, key, value in ((CONFIG_NAME, "_class_name", "CompactUNet"),
                             (LEGACY_CONFIG_NAME, "format", LEGACY_FORMAT)):
        try:
            data = json.loads((Path(folder) / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get(key) == value:
            return True
    return False


@dataclasses.dataclass(frozen=True)
class UnitChoice:
    """What replaces one unit: an op, its hyperparameters, and the unit's recorded shapes."""

    op: str
    hparams: dict[str, Any]
    unit: UnitInfo

    def to_json(self) -> dict[str, Any]:
        unit = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.unit).items()}
        return {"op": self.op, "hparams": dict(self.hparams), "unit": unit}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UnitChoice:
        unit = dict(data["unit"])
        for key in ("in_shape", "out_shape", "context_shape"):
            if unit.get(key) is not None:
                unit[key] = tuple(unit[key])
        return cls(op=data["op"], hparams=dict(data["hparams"]), unit=UnitInfo(**unit))


def op_plugins(choices: Mapping[str, UnitChoice]) -> dict[str, str]:
    """Op name -> the plug-in or entry point it was registered from, for the ops of ``choices`` not built in."""
    plugins = {}
    for choice in choices.values():
        if choice.op in OPS:
            origin = OPS.origin(choice.op)
            if origin.startswith("plugin "):
                plugins[choice.op] = origin.removeprefix("plugin ")
            elif origin.startswith("entry point "):
                plugins[choice.op] = origin
    return plugins


def check_plugins(choices: Mapping[str, UnitChoice], plugins: Mapping[str, str], source: Any = None) -> None:
    """Refuse, in one line, a choice whose op comes from a plug-in that is not loaded (naming op and plug-in)."""
    for path, choice in choices.items():
        if choice.op not in OPS and choice.op in plugins:
            origin = plugins[choice.op]
            how = f"install the package providing {origin}" if origin.startswith("entry point ") \
                else f"pass --plugins {origin} (or list it under plugins:)"
            raise ConfigError(f"op '{choice.op}' comes from the plugin {origin}, which is not loaded: {how}",
                              source=source, key=f"choices.{path}")


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    """A diffusers config as JSON-ready constructor arguments (no private keys, tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dict(config).items() if not k.startswith("_")}


_OWN_KEYS = ("choices", "meta", "plugins")


class CompactUNet(UNet2DConditionModel):
    """A ``UNet2DConditionModel`` whose units at ``choices`` were replaced by candidate ops.

    It is a diffusers UNet (``isinstance(compact, UNet2DConditionModel)``), so pipelines, schedulers and
    ``save_pretrained``/``from_pretrained`` treat it as one. Its config is the UNet's plus three keys:

    Args:
        choices: unit path -> ``UnitChoice.to_json()`` for every replaced unit.
        meta: free-form provenance (arch string, space, teacher).
        plugins: op name -> plug-in, for ops not built in (recorded by :meth:`build` and :meth:`wrap`).
        **unet_config: the ``UNet2DConditionModel`` arguments of the teacher.
    """

    def __init__(self, *, choices: dict[str, dict[str, Any]], meta: dict[str, Any] | None = None,
                 plugins: dict[str, str] | None = None, _teacher: UNet2DConditionModel | None = None,
                 _ops: Mapping[str, nn.Module] | None = None, **unet_config: Any) -> None:
        super().__init__(**unet_config)
        self.register_to_config(choices=dict(choices), meta=dict(meta or {}), plugins=dict(plugins or {}))
        self.choices = {path: UnitChoice.from_json(c) for path, c in choices.items()}
        self.meta = dict(meta or {})
        if _teacher is not None:  # start from the teacher's weights; ops are built from its units
            self.load_state_dict(_teacher.state_dict())
        if _ops is None:
            check_plugins(self.choices, plugins or {})
        for path, choice in self.choices.items():
            op = _ops[path] if _ops is not None else build_op(choice.op, choice.unit, self.get_submodule(path),
                                                              choice.hparams)
            self.set_submodule(path, op)

    @classmethod
    def build(cls, teacher_unet: UNet2DConditionModel, choices: Mapping[str, UnitChoice],
              meta: Mapping[str, Any] | None = None) -> CompactUNet:
        """The teacher with a freshly built op at each unit of ``choices`` (sharing no parameters with it).

        Built on the teacher's device: a teacher on the meta device gives a meta compact UNet (for counting).
        """
        with torch.device(teacher_unet.device):
            return cls(choices={p: c.to_json() for p, c in choices.items()}, meta=dict(meta or {}),
                       plugins=op_plugins(choices), _teacher=teacher_unet, **_plain(teacher_unet.config))

    @classmethod
    def wrap(cls, unet: UNet2DConditionModel, choices: Mapping[str, UnitChoice],
             meta: Mapping[str, Any] | None = None) -> CompactUNet:
        """A compact UNet from ``unet``, whose units at ``choices`` already hold the chosen (trained) ops."""
        compact = cls(choices={p: c.to_json() for p, c in choices.items()}, meta=dict(meta or {}),
                      plugins=op_plugins(choices), _ops={p: unet.get_submodule(p) for p in choices},
                      **_plain(unet.config))
        compact.load_state_dict(unet.state_dict())
        return compact

    @property
    def unet_config(self) -> dict[str, Any]:
        """The plain ``UNet2DConditionModel`` arguments (the config without the compact UNet's own keys)."""
        return {k: v for k, v in _plain(self.config).items() if k not in _OWN_KEYS}

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> Path:  # type: ignore[override]
        """Write ``config.json`` and safetensors weights atomically (a temp folder renamed into place)."""
        kwargs["safe_serialization"] = True
        with atomic_folder(save_directory) as tmp:
            super().save_pretrained(tmp, **kwargs)
        return Path(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> CompactUNet:  # type: ignore[override]
        """Load a local folder written by :meth:`save_pretrained` (never executes code from it).

        Keyword arguments go to diffusers' ``ModelMixin.from_pretrained`` (``torch_dtype``, ``subfolder``, ...).
        """
        folder = Path(pretrained_model_name_or_path) / (kwargs.get("subfolder") or "")
        if (folder / LEGACY_CONFIG_NAME).is_file():
            return cls._from_legacy(folder)
        path = folder / CONFIG_NAME
        if not path.is_file():
            raise ConfigError(f"not a compact UNet folder (no {CONFIG_NAME} or {LEGACY_CONFIG_NAME})", source=folder)
        config = read_mapping(path)
        if config.get("_class_name") != cls.__name__:
            raise ConfigError(f"not a compact UNet ({config.get('_class_name')!r})", source=path, key="_class_name",
                              allowed=[cls.__name__])
        try:
            choices = {p: UnitChoice.from_json(c) for p, c in dict(config["choices"]).items()}
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"invalid choices ({type(err).__name__}: {err})", source=path, key="choices") from None
        check_plugins(choices, config.get("plugins") or {}, source=path)
        kwargs["low_cpu_mem_usage"] = False  # ops are built from real unit weights, not on the 'meta' device
        try:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except ConfigError:
            raise
        except (OSError, SafetensorError, RuntimeError, ValueError) as err:
            raise ConfigError(f"cannot load ({str(err).strip().splitlines()[0]})", source=folder) from None

    @classmethod
    def _from_legacy(cls, folder: Path) -> CompactUNet:
        """A folder in the earlier format: ``compact_unet.json`` + ``model.safetensors``."""
        config = read_folder_config(folder, LEGACY_CONFIG_NAME, what="a compact UNet", format=LEGACY_FORMAT, version=1)
        compact = cls(choices=config["choices"], meta=config.get("meta"), plugins=config.get("plugins"),
                      **config["unet_config"])
        weights = folder / LEGACY_WEIGHTS_NAME
        state, _ = read_safetensors(weights)
        try:
            compact.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ConfigError(f"weights do not match the config ({str(err).splitlines()[0]})", source=weights) from None
        return compact.eval()


def _signature() -> inspect.Signature:
    """``CompactUNet.__init__``'s signature as diffusers' config loading sees it: its keys and the UNet's."""
    own = inspect.signature(CompactUNet.__init__).parameters
    unet = inspect.signature(UNet2DConditionModel.__init__).parameters
    params = [own["self"], *(own[k] for k in _OWN_KEYS),
              *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for k, p in unet.items() if k != "self")]
    return inspect.Signature(params)


CompactUNet.__init__.__signature__ = _signature()  # type: ignore[attr-defined]


__all__ = ["CompactUNet", "UnitChoice", "check_plugins", "op_plugins"]
