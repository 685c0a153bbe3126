"""Reading YAML/JSON config files safely and validating them into typed objects."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from .errors import ConfigError

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Load a YAML or JSON file that must hold a mapping (``yaml.safe_load``; never executes code)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("file not found", source=path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as err:
        detail = str(err).splitlines()
        where = next((line.strip() for line in detail if "line" in line), detail[0] if detail else "")
        raise ConfigError(f"malformed {'JSON' if path.suffix == '.json' else 'YAML'} ({where})", source=path) from None
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at the top level, got {type(data).__name__}", source=path)
    return data


def read_folder_config(folder: str | Path, name: str, *, what: str, format: str, version: int) -> dict[str, Any]:
    """The JSON config ``folder/name`` of a saved-model folder, checked for its ``format`` and ``version``.

    ``what`` names the folder kind in the error for a folder without the file (e.g. ``"a compact UNet"``).
    """
    folder = Path(folder)
    path = folder / name
    if not path.is_file():
        raise ConfigError(f"not {what} folder (no {name})", source=folder)
    config = read_mapping(path)
    if config.get("format") != format:
        raise ConfigError(f"unknown format {config.get('format')!r}", source=path, key="format", allowed=[format])
    if config.get("version") != version:
        raise ConfigError(f"unsupported version {config.get('version')!r}", source=path, key="version",
                          allowed=[version])
    return config


def validate(model: type[ModelT], data: Any, source: str | Path | None = None) -> ModelT:
    """Validate ``data`` into ``model``; the first problem becomes a one-line :class:`ConfigError`."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        allowed = None
        if first["type"] == "extra_forbidden":
            parent = model
            for part in first["loc"][:-1]:
                field = parent.model_fields.get(str(part)) if isinstance(part, str) else None
                annotation = getattr(field, "annotation", None)
                parent = annotation if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel) else None
                if parent is None:
                    break
            if parent is not None:
                allowed = list(parent.model_fields)
            raise ConfigError("unknown key", source=source, key=key, allowed=allowed) from None
        raise ConfigError(first["msg"], source=source, key=key) from None
