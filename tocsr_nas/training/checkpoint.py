"""Training checkpoints: written atomically, verified by sha256 before anything is loaded.

A checkpoint is a folder ``step-XXXXXXXX`` holding ``model.safetensors`` (trainable weights),
optionally ``ema.safetensors``, ``optimizer.pt`` (``torch.save`` of the optimizer state, read back with
``weights_only=True``) and ``state.json`` (``{"step", "files": {name: sha256}, "extra"}``). It is written to
a temporary folder and renamed into place, so a kill mid-write never leaves a half checkpoint behind.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import ConfigError

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
PREFIX = "step-"


@dataclass
class Checkpoint:
    """What a checkpoint restores."""

    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    ema: dict[str, torch.Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(root: str | Path, checkpoint: Checkpoint, keep: int = 2) -> Path:
    """Write ``checkpoint`` atomically under ``root`` and keep only the newest ``keep`` checkpoints."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{checkpoint.step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        save_file(_contiguous(checkpoint.model), str(tmp / MODEL_FILE))
        if checkpoint.ema is not None:
            save_file(_contiguous(checkpoint.ema), str(tmp / EMA_FILE))
        torch.save(checkpoint.optimizer, tmp / OPTIMIZER_FILE)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        state = {"step": checkpoint.step, "files": files, "extra": checkpoint.extra}
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old)
    log.info("saved checkpoint %s", final)
    return final


def list_checkpoints(root: str | Path) -> list[Path]:
    """Checkpoint folders under ``root``, oldest first (temporary folders are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def load_checkpoint(folder: str | Path) -> Checkpoint:
    """Verify every file of a checkpoint against its recorded sha256, then load it.

    Raises:
        ConfigError: naming the file that is missing, unreadable or does not match its hash.
    """
    folder = Path(folder)
    state_path = folder / STATE_FILE
    try:
        state = json.loads(state_path.read_text())
        step, files = int(state["step"]), dict(state["files"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"unreadable checkpoint state ({type(err).__name__}: {err})", source=state_path) from None
    if MODEL_FILE not in files or OPTIMIZER_FILE not in files:
        raise ConfigError("checkpoint lists no model or optimizer file", source=state_path, key="files")
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise ConfigError("checkpoint file missing", source=path)
        if sha256_file(path) != expected:
            raise ConfigError("checkpoint file corrupted (sha256 mismatch)", source=path)
    try:
        model = load_file(str(folder / MODEL_FILE))
        ema = load_file(str(folder / EMA_FILE)) if EMA_FILE in files else None
        optimizer = torch.load(folder / OPTIMIZER_FILE, weights_only=True)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise ConfigError(f"cannot load checkpoint ({str(err).splitlines()[0]})", source=folder) from None
    return Checkpoint(step=step, model=model, optimizer=optimizer, ema=ema, extra=dict(state.get("extra", {})))


def latest_checkpoint(root: str | Path) -> Checkpoint | None:
    """The newest checkpoint under ``root`` that verifies; corrupted ones are skipped with a warning."""
    for folder in reversed(list_checkpoints(root)):
        try:
            return load_checkpoint(folder)
        except ConfigError as err:
            log.warning("skipping checkpoint: %s", err)
    return None


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in tensors.items()}
