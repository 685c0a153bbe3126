"""The experiment config: which stages to run and each stage's settings."""
from __future__ import annotations

from typing import Any, Literal

import pydantic

from ..device import resolve_device, resolve_dtype
from ..distill.config import DistillConfig
from ..search.config import SearchConfig
from ..sr.model import read_sr_config
from ..sr.shipped import resolve_sr_model
from ..sr.train import SRAdaptRecipe, SROneStepRecipe
from ..training.expansion_study import ExpansionStudy
from .stages import ORDER, STAGES


class ExtractConfig(pydantic.BaseModel, extra="forbid"):
    """Which searched arch becomes the compact UNet: the cheapest with loss <= eps."""

    eps: float | None = pydantic.Field(None, gt=0)  # default: the search's first eps


class EvaluateConfig(pydantic.BaseModel, extra="forbid"):
    """SR evaluation: image folders ("builtin" = scikit-image's photographs), multi-step row, latency size."""

    data: list[str] = ["builtin"]
    max_side: int | None = pydantic.Field(None, gt=0)  # center-crop larger images (quick runs); None: whole images
    diffusion_steps: int = pydantic.Field(10, ge=0)  # 0: no multi-step row
    latency_size: int = pydantic.Field(64, gt=0)  # LR side for the latency measurement
    # other SR models (folders or shipped names, e.g. x4-compact) evaluated on the same images, one row each,
    # beside the run's own; they must have the sr stage's scale
    models: list[str] = []
    _scales: dict[str, Any] = pydantic.PrivateAttr(default_factory=dict)

    @pydantic.model_validator(mode="after")
    def _read_models(self) -> EvaluateConfig:
        """Each model's ``sr_model.json`` is read (and checked) once; its scale is kept for the experiment."""
        self._scales = {spec: read_sr_config(resolve_sr_model(spec, key="evaluate.models")).get("scale")
                        for spec in self.models}
        return self

    @property
    def model_scales(self) -> dict[str, Any]:
        """The upscaling factor of every model in ``models``."""
        return dict(self._scales)


class ExperimentConfig(pydantic.BaseModel, extra="forbid"):
    """One experiment run. ``space`` and ``seed`` at the top apply to every stage."""

    name: str = pydantic.Field(min_length=1, pattern=r"^[\w.-]+$")
    description: str = ""
    seed: int = 0
    space: str = "tiny_ldm"
    plugins: list[str] = []  # local .py files (relative to the YAML) or modules; loaded before validation
    device: str | None = None  # auto | cpu | cuda | cuda:N for every stage that runs a network (default: auto)
    dtype: Literal["float32", "bfloat16", "float16"] | None = None  # autocast dtype of the frozen networks
    latent_size: int | None = pydantic.Field(None, gt=0)  # distillation/validation latent side (smoke runs)
    stages: list[str] = pydantic.Field(min_length=1)
    surrogates: DistillConfig = DistillConfig()
    search: SearchConfig = SearchConfig()
    extract: ExtractConfig = ExtractConfig()
    sr: SRAdaptRecipe | None = None  # needed by the sr stage (its backbone is the extracted compact UNet)
    onestep: SROneStepRecipe | None = None  # needed by the onestep stage (its init is the sr stage's model)
    evaluate: EvaluateConfig = EvaluateConfig()
    expansion: ExpansionStudy | None = None  # needed by the expansion stage (experiments/expansion.yaml)
    sweep: dict[str, list[Any]] = {}
    max_runs: int = pydantic.Field(12, gt=0)  # a sweep expanding to more runs asks for --yes

    @pydantic.field_validator("stages")
    @classmethod
    def _known_stages(cls, stages: list[str]) -> list[str]:
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; available: {[s for s in ORDER if s in STAGES]}")
        return sorted(set(stages), key=ORDER.index)

    @pydantic.model_validator(mode="after")
    def _sections_present(self) -> ExperimentConfig:
        for name in ("sr", "onestep", "expansion"):
            if name in self.stages and getattr(self, name) is None:
                raise ValueError(f"stage '{name}' needs a '{name}:' section (see experiments/{'expansion' if name == 'expansion' else 'quickstart'}.yaml)")
        return self

    @pydantic.model_validator(mode="after")
    def _same_scale(self) -> ExperimentConfig:
        """The models the evaluate stage compares with upscale by the sr stage's factor."""
        if "evaluate" in self.stages and self.sr is not None:
            for spec, scale in self.evaluate.model_scales.items():
                if scale != self.sr.scale:
                    raise ValueError(f"evaluate.models: {spec!r} is x{scale}, the sr stage's model is x{self.sr.scale}")
        return self

    @pydantic.model_validator(mode="after")
    def _device_runs(self) -> ExperimentConfig:
        """A device or dtype this machine cannot run is refused when the experiment is read."""
        if self.device is not None or self.dtype is not None:
            resolve_dtype(self.dtype or "float32", resolve_device(self.device or "auto"))
        return self

    @pydantic.model_validator(mode="after")
    def _propagate(self) -> ExperimentConfig:
        """The top-level space is every stage's; the top-level seed, device, dtype and latent size are the
        defaults of every stage's."""
        for name in ("surrogates", "search"):
            section = getattr(self, name)
            update = {"space": self.space}
            for key in ("seed", "device", "dtype", "latent_size"):
                if key not in section.model_fields_set and getattr(self, key) is not None:
                    update[key] = getattr(self, key)
            setattr(self, name, section.model_copy(update=update))
        return self
