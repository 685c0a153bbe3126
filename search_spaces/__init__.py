"""Search spaces in YAML: ``search_spaces.load("tiny_ldm")`` or ``search_spaces.load("path/to/space.yaml")``.

A space names a teacher, groups the teacher's units into stages by path patterns, and lists candidate ops per
unit kind (see ``tiny_ldm.yaml`` for an annotated example). ``plugins: [my_ops.py]`` (paths relative to the YAML)
loads local ops before the space is resolved (see :mod:`tocsr_nas.plugins`).
"""
from __future__ import annotations

from pathlib import Path

from tocsr_nas.config_io import read_mapping, validate
from tocsr_nas.errors import ConfigError
from tocsr_nas.plugins import load_config_plugins

from .schema import SpaceConfig, StageConfig
from .space import Candidate, Decision, SearchSpace

SPACE_DIR = Path(__file__).parent


def available_spaces() -> list[str]:
    """Names of the search spaces that ship with the toolkit."""
    return sorted(p.stem for p in SPACE_DIR.glob("*.yaml"))


def space_path(spec: str | Path) -> Path:
    """The YAML file for a shipped space name or a path."""
    path = Path(spec)
    if path.suffix in {".yaml", ".yml"}:
        if not path.is_file():
            raise ConfigError("search space file not found", source=path)
        return path
    if str(spec) in available_spaces():
        return SPACE_DIR / f"{spec}.yaml"
    raise ConfigError(f"unknown search space '{spec}'", key="space", allowed=available_spaces())


def load(spec: str | Path, unit_kinds: dict[str, str] | None = None) -> SearchSpace:
    """Load and resolve a search space.

    Args:
        spec: a shipped space name (see :func:`available_spaces`) or a YAML path.
        unit_kinds: unit path -> kind of the teacher, in forward order; by default read from the teacher named in
            the YAML (built on the meta device, so even SD-scale teachers resolve instantly).
    """
    path = space_path(spec)
    data = read_mapping(path)
    load_config_plugins(data, source=path, base=path.parent)
    config = validate(SpaceConfig, data, source=path)
    teacher_path = path.parent / config.teacher
    if teacher_path.suffix in {".yaml", ".yml", ".json"} or teacher_path.is_dir():
        if teacher_path.exists():
            config = config.model_copy(update={"teacher": str(teacher_path)})
    if unit_kinds is None:
        from tocsr_nas.teachers import unet_skeleton  # noqa: PLC0415
        from tocsr_nas.units import iter_unit_modules  # noqa: PLC0415

        unit_kinds = {p: kind for p, kind, _ in iter_unit_modules(unet_skeleton(config.teacher))}
    return SearchSpace.resolve(config, unit_kinds, source=path)


__all__ = ["Candidate", "Decision", "SearchSpace", "SpaceConfig", "StageConfig", "available_spaces", "load", "space_path"]
