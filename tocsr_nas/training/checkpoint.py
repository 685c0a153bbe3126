"""Training checkpoints: written atomically, verified by sha256 before anything is loaded.

A checkpoint is a folder ``step-XXXXXXXX`` holding ``model.safetensors`` (trainable weights),
optionally ``ema.safetensors``, ``optimizer.pt`` (``torch.save`` of the optimizer state, read back with
``weights_only=True``) and ``state.json`` (``{"step", "files": {name: sha256}, "extra"}``). It is written to
a temporary folder, fsynced and renamed into place (:func:`tocsr_nas.atomic.atomic_folder`), so a kill or a power
loss mid-write never leaves a half checkpoint behind.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import (
    atomic_folder,
    checksums,
    read_safetensors,
    save_safetensors,
    sha256_file,
    verify_checksums,
)
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


def save_checkpoint(root: str | Path, checkpoint: Checkpoint, keep: int = 2) -> Path:
    """Write ``checkpoint`` atomically under ``root`` and keep only the newest ``keep`` checkpoints."""
    root = Path(root)
    final = root / f"{PREFIX}{checkpoint.step:08d}"
    with atomic_folder(final) as tmp:
        save_safetensors(tmp / MODEL_FILE, checkpoint.model)
        if checkpoint.ema is not None:
            save_safetensors(tmp / EMA_FILE, checkpoint.ema)
        torch.save(checkpoint.optimizer, tmp / OPTIMIZER_FILE)
        files = checksums(tmp, [p.name for p in tmp.iterdir() if not p.name.startswith(".")])
        state = {"step": checkpoint.step, "files": files, "extra": checkpoint.extra}
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
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
    verify_checksums(folder, files, what="checkpoint file")
    try:
        model, _ = read_safetensors(folder / MODEL_FILE)
        ema = read_safetensors(folder / EMA_FILE)[0] if EMA_FILE in files else None
        optimizer = torch.load(folder / OPTIMIZER_FILE, weights_only=True)
    except (OSError, RuntimeError) as err:
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


__all__ = ["Checkpoint", "latest_checkpoint", "list_checkpoints", "load_checkpoint", "save_checkpoint",
           "sha256_file"]
