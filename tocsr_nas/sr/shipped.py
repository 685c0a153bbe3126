"""SR models shipped in the package's weights folder, and how a ``--model`` spec names one.

A ``--model`` spec is a path to an SR model folder or the name of a shipped one (a folder of
``tocsr_nas/weights`` holding an ``sr_model.json``). An existing path wins over a name. No torch import here, so
the CLI can resolve specs before the heavy imports.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_SR_MODEL = "x4-compact"
_CONFIG_NAME = "sr_model.json"  # .model.CONFIG_NAME, spelled out to keep this module free of torch


def shipped_sr_models() -> list[str]:
    """Names of the SR models shipped with the package."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / _CONFIG_NAME).is_file())


def resolve_sr_model(spec: str | Path | None, *, key: str = "--model") -> Path:
    """The folder of an SR model spec: an existing path, a shipped model's name, or ``None`` for the default."""
    name = DEFAULT_SR_MODEL if spec is None else str(spec)
    path = Path(name)
    if spec is not None and (path.exists() or path.name != name):
        return path  # a path (checked by the caller); a bare word that exists locally is a path too
    if name in shipped_sr_models():
        return WEIGHTS_DIR / name
    if spec is None:
        raise ConfigError(f"the default SR model {DEFAULT_SR_MODEL!r} is not installed; give --model DIR",
                          source=WEIGHTS_DIR, key=key)
    raise ConfigError(f"no SR model folder or shipped SR model named {name!r}", source=path, key=key,
                      allowed=shipped_sr_models() or "an SR model folder")


__all__ = ["DEFAULT_SR_MODEL", "WEIGHTS_DIR", "resolve_sr_model", "shipped_sr_models"]
