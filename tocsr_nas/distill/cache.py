"""An optional on-disk cache of teacher activations, for repeated distillation runs on the same data.

Step ``s`` is stored as ``<cache_dir>/<key>/step-XXXXXXXX.safetensors`` holding every unit's inputs and output.
``<key>`` hashes the teacher weights and everything that decides the batches (latents, timesteps, seed, batch
size), so a cache is only ever read back by a run that would have computed the same activations. Size: about
``steps x batch x (sum of the units' input and output sizes) x 4`` bytes.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path

from ..atomic import read_safetensors, save_safetensors
from ..errors import ConfigError
from ..units import UnitInfo
from .capture import UnitCall
from .config import DistillConfig

log = logging.getLogger(__name__)


class ActivationCache:
    """Reads and writes the cached teacher activations of one data stream."""

    def __init__(self, root: str | Path, config: DistillConfig, teacher_weights: str) -> None:
        stream = {"teacher": teacher_weights, "latents": config.latents.model_dump(),
                  "timesteps": config.timesteps.model_dump(), "seed": config.seed, "batch_size": config.batch_size}
        key = hashlib.sha1(json.dumps(stream, sort_keys=True).encode()).hexdigest()[:16]
        self.folder = Path(root) / key
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, step: int) -> Path:
        return self.folder / f"step-{step:08d}.safetensors"

    def get(self, step: int, units: Iterable[UnitInfo]) -> dict[str, UnitCall] | None:
        """The cached calls of ``units`` at ``step``, or ``None`` when absent or unreadable."""
        path = self._path(step)
        if not path.is_file():
            return None
        try:
            tensors, _ = read_safetensors(path)
        except ConfigError as err:
            log.warning("ignoring unreadable cache file (%s)", err)
            return None
        calls = {u.path: UnitCall.from_tensors(tensors, u.path) for u in units}
        if any(call.hidden is None or call.output is None for call in calls.values()):
            return None
        return calls

    def put(self, step: int, calls: dict[str, UnitCall]) -> None:
        """Store every unit's call at ``step`` (written atomically and fsynced)."""
        tensors = {}
        for path, call in calls.items():
            tensors.update(call.tensors(path))
        save_safetensors(self._path(step), tensors)


__all__ = ["ActivationCache"]
