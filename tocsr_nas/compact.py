"""Compact UNets: a teacher UNet with some units replaced by candidate ops, saved and loaded on its own.

A :class:`CompactUNet` is a diffusers model (``ModelMixin`` + ``ConfigMixin``): its constructor arguments are its
saved config (the UNet config, the op, hyperparameters and recorded shapes of every replaced unit, free-form
``meta``, and the plug-ins its ops came from), so ``save_pretrained``/``from_pretrained`` write and read a plain
diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors``), also as the ``unet/`` of a
``StableDiffusionPipeline``. It keeps the diffusers calling convention (``unet(sample, timestep,
encoder_hidden_states).sample``). Loading rebuilds the structure from the config alone and never runs code: an op
from a plug-in that is not loaded is a one-line error naming the plug-in to pass with ``--plugins``. Folders in
the earlier format (``compact_unet.json`` + ``model.safetensors``) still load.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diffusers import ConfigMixin, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import FrozenDict, register_to_config
from safetensors import SafetensorError
from safetensors.torch import load_file

from .atomic import atomic_folder
from .config_io import read_folder_config, read_mapping
from .errors import ConfigError
from .ops.registry import OPS, build_op
from .units import UnitInfo

CONFIG_NAME = "config.json"
LEGACY_FORMAT = "tocsr-nas/compact-unet"
LEGACY_CONFIG_NAME = "compact_unet.json"
LEGACY_WEIGHTS_NAME = "model.safetensors"


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


class CompactUNet(ModelMixin, ConfigMixin):
    """A UNet whose units were replaced as described by ``choices``; behaves like the diffusers UNet.

    Args:
        unet_config: the ``UNet2DConditionModel`` config of the teacher.
        choices: unit path -> ``UnitChoice.to_json()`` for every replaced unit.
        meta: free-form provenance (arch string, space, teacher).
        plugins: op name -> plug-in, for ops not built in (recorded by :meth:`build`).
        unet: an already assembled UNet (from :meth:`build`); not part of the config.
    """

    config_name = CONFIG_NAME
    ignore_for_config = ["unet"]

    @register_to_config
    def __init__(self, unet_config: dict[str, Any], choices: dict[str, dict[str, Any]],
                 meta: dict[str, Any] | None = None, plugins: dict[str, str] | None = None,
                 unet: UNet2DConditionModel | None = None) -> None:
        super().__init__()
        self.choices = {path: UnitChoice.from_json(c) for path, c in choices.items()}
        self.meta = dict(meta or {})
        if unet is None:
            check_plugins(self.choices, plugins or {})
            unet = UNet2DConditionModel(**unet_config)
            for path, choice in self.choices.items():
                unet.set_submodule(path, build_op(choice.op, choice.unit, unet.get_submodule(path), choice.hparams))
        self.unet = unet

    @classmethod
    def build(cls, teacher_unet: UNet2DConditionModel, choices: Mapping[str, UnitChoice],
              meta: Mapping[str, Any] | None = None) -> CompactUNet:
        """Copy ``teacher_unet`` and put a freshly built op at each unit of ``choices``.

        The copy shares no parameters with ``teacher_unet``; ``teacher`` choices keep a copy of the teacher's unit.
        """
        unet = copy.deepcopy(teacher_unet)
        for path, choice in choices.items():
            unet.set_submodule(path, build_op(choice.op, choice.unit, unet.get_submodule(path), choice.hparams))
        return cls.wrap(unet, choices, meta)

    @classmethod
    def wrap(cls, unet: UNet2DConditionModel, choices: Mapping[str, UnitChoice],
             meta: Mapping[str, Any] | None = None) -> CompactUNet:
        """A compact UNet around ``unet``, whose units at ``choices`` already hold the chosen ops."""
        return cls(unet_config=_plain(unet.config), choices={p: c.to_json() for p, c in choices.items()},
                   meta=dict(meta or {}), plugins=op_plugins(choices), unet=unet)

    @property
    def config(self) -> FrozenDict:
        """The saved config plus the inner UNet's keys (``in_channels``, ``sample_size``, ...) pipelines read."""
        unet = self.__dict__.get("_modules", {}).get("unet")
        return FrozenDict({**(dict(unet.config) if unet is not None else {}), **self._internal_dict})

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.unet(*args, **kwargs)

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> Path:  # type: ignore[override]
        """Write ``config.json`` and safetensors weights atomically (a temp folder renamed into place)."""
        self.register_to_config(unet_config=_plain(self.unet.config))  # e.g. after conv_in was widened
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
        kwargs.setdefault("low_cpu_mem_usage", False)  # ops build from the teacher's weights: not on 'meta'
        try:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except ConfigError:
            raise
        except (OSError, SafetensorError, RuntimeError, ValueError) as err:
            raise ConfigError(f"cannot load ({str(err).strip().splitlines()[0]})", source=folder) from None

    @classmethod
    def _from_legacy(cls, folder: Path) -> CompactUNet:
        """A folder in the earlier format: ``compact_unet.json`` + ``model.safetensors`` (keys without ``unet.``)."""
        config = read_folder_config(folder, LEGACY_CONFIG_NAME, what="a compact UNet", format=LEGACY_FORMAT, version=1)
        compact = cls(unet_config=config["unet_config"], choices=config["choices"], meta=config.get("meta"),
                      plugins=config.get("plugins"))
        weights = folder / LEGACY_WEIGHTS_NAME
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError) as err:
            raise ConfigError(f"cannot read weights ({err})", source=weights) from None
        try:
            compact.unet.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ConfigError(f"weights do not match the config ({str(err).splitlines()[0]})", source=weights) from None
        return compact.eval()


__all__ = ["CompactUNet", "UnitChoice", "check_plugins", "op_plugins"]
