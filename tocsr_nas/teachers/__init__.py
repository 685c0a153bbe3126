"""Teacher zoo: build or load the latent-diffusion UNet that everything else compresses.

A teacher spec is one of

* a registered name (``tiny-ldm``, ``sd15``, ``sd15-16ch``, ``bk-sdm-base``/``small``/``tiny``): a YAML file in
  ``tocsr_nas/teachers/configs``;
* a path to such a YAML/JSON file (``{description, latent_size, context, unet, weights?}``) or to a bare
  diffusers UNet ``config.json``;
* a local ``from_pretrained`` folder (a UNet folder, or a pipeline folder with a ``unet/`` subfolder), or a teacher
  folder holding ``teacher.yaml`` (a config as above, e.g. written by ``tocsr-nas expand``).

Nothing is ever fetched from a hub.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import pydantic
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from ..config_io import read_mapping, validate
from ..errors import ConfigError
from .context import ContextProvider, EmbeddingContext, LearnedContext

CONFIG_DIR = Path(__file__).with_name("configs")
TEACHER_FILE = "teacher.yaml"  # a teacher folder's config


class ContextConfig(pydantic.BaseModel, extra="forbid"):
    kind: Literal["learned", "embeddings"] = "learned"
    length: int = pydantic.Field(8, gt=0)
    path: str | None = None  # for kind=embeddings: a safetensors file (relative to the config file)


class TeacherConfig(pydantic.BaseModel, extra="forbid"):
    description: str = ""
    latent_size: int = pydantic.Field(gt=0)
    context: ContextConfig = ContextConfig()
    unet: dict[str, Any]
    weights: str | None = None  # folder with trained weights, relative to the config file


@dataclasses.dataclass
class Teacher:
    """A teacher UNet with what is needed to call it: its context provider and default latent size.

    ``vae`` is the autoencoder of its latent space when trained weights ship with it (else ``None``).
    """

    name: str
    unet: UNet2DConditionModel
    context: ContextProvider
    latent_size: int
    vae: AutoencoderKL | None = None

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    def example_inputs(self, batch_size: int = 1, latent_size: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
        """Seeded example inputs ``{sample, timestep, encoder_hidden_states}`` for one UNet call."""
        size = latent_size or self.latent_size
        generator = torch.Generator().manual_seed(seed)
        sample = torch.randn(batch_size, self.latent_channels, size, size, generator=generator)
        timestep = torch.randint(0, 1000, (batch_size,), generator=generator)
        with torch.no_grad():
            context = self.context(batch_size, generator).detach().clone()
        return {"sample": sample, "timestep": timestep, "encoder_hidden_states": context}


def available_teachers() -> list[str]:
    """Names of the teachers that ship with the toolkit."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_teacher(spec: str | Path, *, seed: int = 0) -> Teacher:
    """Build or load a teacher from a name, a config file or a local ``from_pretrained`` folder.

    Weights: a folder spec and a config with ``weights:`` load trained weights; otherwise the UNet is
    randomly initialised from ``seed``.
    """
    path = Path(spec)
    if path.is_dir():
        return _from_folder(path)
    if path.suffix in {".yaml", ".yml", ".json"}:
        return _from_config_file(path, seed)
    if str(spec) in available_teachers():
        return _from_config_file(CONFIG_DIR / f"{spec}.yaml", seed)
    if path.suffix or "/" in str(spec):
        raise ConfigError("teacher folder or config file not found", source=spec)
    raise ConfigError(f"unknown teacher '{spec}'", key="teacher", allowed=available_teachers())


def unet_skeleton(spec: str | Path) -> UNet2DConditionModel:
    """The teacher's UNet built on the meta device (no memory, no weights): for reading its structure quickly."""
    path = Path(spec)
    if path.is_dir() and (path / TEACHER_FILE).is_file():
        path = path / TEACHER_FILE
    if path.is_dir():
        unet_dir = path / "unet" if (path / "unet" / "config.json").is_file() else path
        if not (unet_dir / "config.json").is_file():
            raise ConfigError("not a diffusers UNet folder (no config.json)", source=path)
        kwargs = dict(UNet2DConditionModel.load_config(unet_dir))
        source = unet_dir / "config.json"
    else:
        if path.suffix not in {".yaml", ".yml", ".json"}:
            if str(spec) not in available_teachers():
                raise ConfigError(f"unknown teacher '{spec}'", key="teacher", allowed=available_teachers())
            path = CONFIG_DIR / f"{spec}.yaml"
        data = read_mapping(path)
        kwargs = data.get("unet", data)
        source = path
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_")}
    with torch.device("meta"):
        return _build_unet(kwargs, source)


def _from_config_file(path: Path, seed: int) -> Teacher:
    data = read_mapping(path)
    if "unet" not in data:  # a bare diffusers UNet config.json
        data = {"latent_size": data.get("sample_size", 64), "unet": data}
    config = validate(TeacherConfig, data, source=path)
    torch.manual_seed(seed)  # diffusers initialises from the global generator; seed it for reproducibility
    unet = _build_unet(config.unet, path)
    context = _build_context(config.context, unet, path.parent, source=path)
    teacher = Teacher(name=path.stem, unet=unet, context=context, latent_size=config.latent_size)
    if config.weights is not None:
        from .weights import load_teacher_weights  # noqa: PLC0415 (weights need only be read when asked for)

        load_teacher_weights(teacher, path.parent / config.weights)
    teacher.unet.eval()
    return teacher


def _from_folder(folder: Path) -> Teacher:
    if (folder / TEACHER_FILE).is_file():
        teacher = _from_config_file(folder / TEACHER_FILE, seed=0)
        teacher.name = folder.name
        return teacher
    unet_dir = folder / "unet" if (folder / "unet" / "config.json").is_file() else folder
    if not (unet_dir / "config.json").is_file():
        raise ConfigError("not a diffusers UNet folder (no config.json)", source=folder)
    try:
        unet = UNet2DConditionModel.from_pretrained(unet_dir, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load the UNet ({str(err).splitlines()[0]})", source=unet_dir) from None
    embeddings = folder / "context.safetensors"
    context: ContextProvider
    if embeddings.is_file():
        context = EmbeddingContext(embeddings)
    else:
        context = LearnedContext(77, int(unet.config.cross_attention_dim))
    return Teacher(name=folder.name, unet=unet.eval(), context=context, latent_size=int(unet.config.sample_size))


def _build_unet(kwargs: dict[str, Any], source: Path) -> UNet2DConditionModel:
    try:
        return UNet2DConditionModel(**kwargs)
    except TypeError as err:
        allowed = sorted(UNet2DConditionModel.extract_init_dict(dict())[0])
        raise ConfigError(f"invalid UNet argument ({err})", source=source, key="unet", allowed=allowed) from None
    except ValueError as err:
        raise ConfigError(f"invalid UNet config ({err})", source=source, key="unet") from None


def _build_context(config: ContextConfig, unet: UNet2DConditionModel, root: Path, source: Path) -> ContextProvider:
    dim = int(unet.config.cross_attention_dim)
    if config.kind == "learned":
        return LearnedContext(config.length, dim)
    if config.path is None:
        raise ConfigError("embeddings context needs a path", source=source, key="context.path")
    provider = EmbeddingContext(root / config.path)
    if provider.dim != dim:
        raise ConfigError(f"embedding dim {provider.dim} != cross_attention_dim {dim}", source=source, key="context.path")
    return provider


__all__ = ["Teacher", "TeacherConfig", "ContextProvider", "LearnedContext", "EmbeddingContext",
           "available_teachers", "load_teacher", "unet_skeleton"]
