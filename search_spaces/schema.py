"""The YAML schema of a search space (validated with pydantic; unknown keys are errors)."""
from __future__ import annotations

from typing import Any

import pydantic

CandidateEntry = str | dict[str, Any]
"""``teacher`` or ``{op: slim_resnet, width: [0.25, 0.5]}``: a list of values expands into several candidates."""


class StageConfig(pydantic.BaseModel, extra="forbid"):
    """A named group of units (``fnmatch`` patterns on unit paths) whose choices are made together."""

    name: str = pydantic.Field(min_length=1, pattern=r"^[^:;,=()\s]+$")
    units: list[str] = pydantic.Field(min_length=1)
    per_unit: bool = False  # one decision per unit instead of one per unit kind of the stage
    candidates: dict[str, list[CandidateEntry]] = {}  # per unit kind; overrides the space-wide lists


class SpaceConfig(pydantic.BaseModel, extra="forbid"):
    """A search space: a teacher, its stages and the candidate ops allowed per unit kind."""

    name: str = pydantic.Field(min_length=1)
    description: str = ""
    teacher: str = "tiny-ldm"
    plugins: list[str] = []  # local .py files (relative to the YAML) or modules registering ops; loaded first
    latent_size: int | None = pydantic.Field(None, gt=0)  # profiling resolution; the teacher's by default
    candidates: dict[str, list[CandidateEntry]] = {}  # per unit kind, for every stage
    stages: list[StageConfig] = pydantic.Field(min_length=1)
