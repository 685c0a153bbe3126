"""The surrogate folder: one safetensors file per trained candidate, per-candidate records, a manifest.

Layout of ``out/``::

    manifest.json              format, space + fingerprint, teacher + weights hash, config + hash, summary
    relative_errors.csv        one row per candidate: held-out relative error at init and after training
    candidates/<key>.json      the candidate's record (status, step, errors, config hash)
    candidates/<key>.safetensors   its trained weights (status ``done``)
    checkpoints/<key>.safetensors  mid-training state: weights + Adam moments (metadata: step)

``<key>`` is the unit path and candidate label, sanitised for file names, plus a short hash. Every file is
written atomically and fsynced (:mod:`tocsr_nas.atomic`), so a killed run never leaves a half-written file. Records
are one file per candidate so that parallel workers never write the same file. A record of trained weights holds
their sha256, so :func:`surrogates_hash` (the folder's content hash, which searches record as provenance) needs
no pass over the weights.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search_spaces import SearchSpace

from ..atomic import (
    atomic_write,
    digest,
    read_safetensors,
    save_safetensors,
    sha256_file,
    write_json,
)
from ..errors import ConfigError
from ..profiling.cost_table import space_fingerprint
from ..vae import load_state

log = logging.getLogger(__name__)

FORMAT = "tocsr-nas/surrogates"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
TABLE_FILE = "relative_errors.csv"
CANDIDATE_DIR = "candidates"
CHECKPOINT_DIR = "checkpoints"
TEACHER_OP = "teacher"

# Record statuses: teacher (the unit itself, never trained), fixed (no trainable parameters), training,
# done, failed.
FINAL_STATUSES = ("teacher", "fixed", "done", "failed")


def candidate_key(unit: str, label: str) -> str:
    """A file-name-safe key for candidate ``label`` at unit ``unit``."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{unit}--{label}").strip("_")
    return f"{readable}-{hashlib.sha1(f'{unit}|{label}'.encode()).hexdigest()[:6]}"


def candidate_config_hash(config_hash: str, unit: str, op: str, hparams: dict[str, Any]) -> str:
    """The hash that decides whether a finished candidate must be retrained."""
    text = json.dumps([config_hash, unit, op, hparams], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _hash_state(state: dict[str, torch.Tensor]) -> str:
    hasher = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to(torch.float32).contiguous().cpu()
        hasher.update(f"{name}{tuple(tensor.shape)}".encode())
        hasher.update(tensor.numpy().tobytes())
    return hasher.hexdigest()[:16]


def _teacher_units(space: SearchSpace) -> tuple[set[str], set[str]]:
    """(units whose teacher module is kept as a candidate, units whose teacher module is not)."""
    kept, dropped = set(), set()
    for decision in space.decisions:
        has_teacher = any(c.op == TEACHER_OP for c in decision.candidates)
        (kept if has_teacher else dropped).update(decision.units)
    return kept, dropped


def teacher_hash(unet: nn.Module, space: SearchSpace) -> str:
    """A hash of the teacher UNet's weights (units that ``space`` never keeps are left out)."""
    _, dropped = _teacher_units(space)
    state = {k: v for k, v in unet.state_dict().items() if not any(k.startswith(f"{p}.") for p in dropped)}
    return _hash_state(state)


def supernet_teacher_hash(supernet: nn.Module) -> str:
    """:func:`teacher_hash` of the teacher a :class:`~tocsr_nas.supernet.Supernet` was built from."""
    teacher_index = {path: _teacher_index(supernet.space, path) for path in supernet.blocks}
    state = {}
    for key, value in supernet.unet.state_dict().items():
        path = next((p for p in teacher_index if key.startswith(f"{p}.candidates.")), None)
        if path is None:
            state[key] = value
            continue
        index, _, name = key[len(f"{path}.candidates."):].partition(".")
        if int(index) == teacher_index[path]:
            state[f"{path}.{name}"] = value
    return _hash_state(state)


def _teacher_index(space: SearchSpace, path: str) -> int | None:
    for decision in space.decisions:
        if path in decision.units:
            return next((i for i, c in enumerate(decision.candidates) if c.op == TEACHER_OP), None)
    return None


@dataclasses.dataclass
class CandidateRecord:
    """What is known about one candidate of one unit."""

    key: str
    unit: str
    decision: str
    label: str
    op: str
    hparams: dict[str, Any]
    config_hash: str
    params: int = 0
    status: str = "training"
    step: int = 0
    steps: int = 0
    rel_error_init: float | None = None
    rel_error: float | None = None
    train_loss: float | None = None
    error: str | None = None
    wall_s: float = 0.0
    weights_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CandidateRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _write_json(path: Path, data: Any) -> None:
    write_json(path, data, indent=2)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"unreadable JSON ({type(err).__name__}: {err})", source=path) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object", source=path)
    return data


class SurrogateStore:
    """Reads and writes one surrogate folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    # -- header ---------------------------------------------------------------------------------------------
    def header(self, space: SearchSpace, teacher_name: str, teacher_weights: str) -> dict[str, Any]:
        """The identity of the space and teacher this folder belongs to."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "space": space.name,
                "space_fingerprint": space_fingerprint(space), "teacher": teacher_name, "teacher_hash": teacher_weights}

    def check(self, header: dict[str, Any]) -> dict[str, Any] | None:
        """Refuse a folder that belongs to another space or teacher; returns the existing manifest (or None)."""
        path = self.folder / MANIFEST_FILE
        if not path.is_file():
            return None
        manifest = _read_json(path)
        if manifest.get("format") != FORMAT:
            raise ConfigError("not a surrogate folder", source=path, key="format", allowed=[FORMAT])
        for key, what in (("teacher", "teacher"), ("teacher_hash", "teacher weights"), ("space", "space"),
                          ("space_fingerprint", "search space (its candidates or units differ)")):
            if manifest.get(key) != header[key]:
                raise ConfigError(f"trained for another {what}: {manifest.get(key)!r}, not {header[key]!r}; "
                                  "use another folder", source=path, key=key)
        return manifest

    def write_manifest(self, header: dict[str, Any], config: dict[str, Any], config_hash: str,
                       records: Iterable[CandidateRecord] = ()) -> None:
        records = list(records)
        counts: dict[str, int] = {}
        for record in records:
            counts[record.status] = counts.get(record.status, 0) + 1
        manifest = {**header, "config_hash": config_hash, "config": config, "counts": counts,
                    "candidates": {r.key: {"unit": r.unit, "label": r.label, "status": r.status} for r in records}}
        _write_json(self.folder / MANIFEST_FILE, manifest)

    def manifest(self) -> dict[str, Any]:
        path = self.folder / MANIFEST_FILE
        if not path.is_file():
            raise ConfigError("no manifest.json: not a surrogate folder", source=self.folder)
        return _read_json(path)

    # -- records ----------------------------------------------------------------------------------------------
    def record_path(self, key: str) -> Path:
        return self.folder / CANDIDATE_DIR / f"{key}.json"

    def weights_path(self, key: str) -> Path:
        return self.folder / CANDIDATE_DIR / f"{key}.safetensors"

    def checkpoint_path(self, key: str) -> Path:
        return self.folder / CHECKPOINT_DIR / f"{key}.safetensors"

    def read_record(self, key: str) -> CandidateRecord | None:
        path = self.record_path(key)
        return CandidateRecord.from_json(_read_json(path)) if path.is_file() else None

    def write_record(self, record: CandidateRecord) -> None:
        _write_json(self.record_path(record.key), record.to_json())

    # -- weights ----------------------------------------------------------------------------------------------
    def save_weights(self, record: CandidateRecord, module: nn.Module) -> None:
        """Write the trained weights, then the record (status ``done``), then drop the checkpoint."""
        metadata = {"unit": record.unit, "label": record.label, "config_hash": record.config_hash}
        path = save_safetensors(self.weights_path(record.key), module.state_dict(), metadata)
        record.weights_sha256 = sha256_file(path)
        self.write_record(record)
        self.checkpoint_path(record.key).unlink(missing_ok=True)

    def save_checkpoint(self, record: CandidateRecord, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Mid-training state: weights, Adam moments, step (in the metadata), then the record."""
        tensors = {f"param.{k}": v.detach().contiguous() for k, v in module.state_dict().items()}
        for index, state in optimizer.state_dict()["state"].items():
            for name, value in state.items():
                tensors[f"opt.{index}.{name}"] = torch.as_tensor(value).detach().contiguous()
        metadata = {"step": str(record.step), "config_hash": record.config_hash}
        save_safetensors(self.checkpoint_path(record.key), tensors, metadata)
        self.write_record(record)

    def load_checkpoint(self, record: CandidateRecord, module: nn.Module, optimizer: torch.optim.Optimizer) -> int | None:
        """Restore a checkpoint written for the same config; returns its step (``None`` if there is none)."""
        path = self.checkpoint_path(record.key)
        if not path.is_file():
            return None
        try:
            tensors, metadata = read_safetensors(path)
        except ConfigError as err:
            log.warning("ignoring an unreadable checkpoint: %s", err)
            return None
        if metadata.get("config_hash") != record.config_hash:
            return None
        module.load_state_dict({k[len("param."):]: v for k, v in tensors.items() if k.startswith("param.")})
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name, value in tensors.items():
            if name.startswith("opt."):
                _, index, field = name.split(".", 2)
                state.setdefault(int(index), {})[field] = value
        optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
        return int(metadata["step"])

    def write_table(self, records: Iterable[CandidateRecord]) -> Path:
        """The per-candidate relative-error table (CSV)."""
        path = self.folder / TABLE_FILE
        columns = ["unit", "decision", "label", "op", "params", "status", "steps", "rel_error_init", "rel_error",
                   "train_loss", "error"]

        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as stream:
                writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
                writer.writeheader()
                for record in records:
                    writer.writerow(record.to_json())

        atomic_write(path, write)
        return path


def surrogates_hash(folder: str | Path) -> str:
    """The content hash of a surrogate folder: its config hash and every candidate's status and weights sha256.

    Retraining any candidate (or the whole folder with another config) changes it. A ConfigError when ``folder``
    is not a surrogate folder.
    """
    store = SurrogateStore(folder)
    manifest = store.manifest()
    if manifest.get("format") != FORMAT:
        raise ConfigError("not a surrogate folder", source=Path(folder) / MANIFEST_FILE, key="format", allowed=[FORMAT])
    entries: dict[str, Any] = {}
    for key in sorted(manifest.get("candidates", {})):
        record = store.read_record(key)
        if record is None:
            entries[key] = None
            continue
        sha = record.weights_sha256
        if record.status == "done" and sha is None and store.weights_path(key).is_file():
            sha = sha256_file(store.weights_path(key))  # a folder written before records held their checksum
        entries[key] = [record.status, record.config_hash, sha]
    return digest({"config_hash": manifest.get("config_hash"), "candidates": entries})


def load_surrogates(supernet: nn.Module, folder: str | Path) -> dict[str, str]:
    """Load the trained candidates of ``folder`` into ``supernet`` in place.

    The folder must have been trained for the supernet's space and teacher (else a one-line
    :class:`ConfigError`). Candidates that are missing, failed or unfinished keep their initial weights and are
    logged. Returns ``{key: status}`` for every candidate of the supernet.
    """
    store = SurrogateStore(folder)
    store.manifest()  # a clear error when the folder holds no manifest
    store.check(store.header(supernet.space, supernet.teacher_name, supernet_teacher_hash(supernet)))
    statuses: dict[str, str] = {}
    for path, block in supernet.blocks.items():
        for label, module in zip(block.labels, block.candidates):
            key = candidate_key(path, label)
            record = store.read_record(key)
            status = "missing" if record is None else record.status
            if status == "done":
                load_state(module, store.weights_path(key))
            elif status not in ("teacher", "fixed"):
                log.warning("candidate %s at %s is %s: it keeps its initial weights", label, path, status)
            statuses[key] = status
    return statuses



def decision_errors(folder: str | Path, space: SearchSpace) -> tuple[tuple[float, ...], ...]:
    """Per decision of ``space``, per candidate: its held-out relative error (``rel_error``, measured by
    ``distill-blocks``) summed over the decision's units; the prior that ``bo-prior`` puts under its GP.

    The teacher candidate counts 0. A candidate without a final error (failed, missing, unfinished) counts its
    error at initialisation, else the largest known error of its decision. A ConfigError when ``folder`` is not a
    surrogate folder of ``space``.
    """
    store = SurrogateStore(folder)
    manifest = store.manifest()
    if manifest.get("format") != FORMAT or manifest.get("space_fingerprint") != space_fingerprint(space):
        raise ConfigError("not a surrogate folder of this search space", source=Path(folder) / MANIFEST_FILE,
                          key="space_fingerprint", allowed=[space_fingerprint(space)])
    errors = []
    for decision in space.decisions:
        sums: list[float | None] = []
        for candidate in decision.candidates:
            total: float | None = 0.0
            for unit in decision.units:
                record = store.read_record(candidate_key(unit, candidate.label))
                value = 0.0 if candidate.op == TEACHER_OP else None
                if record is not None and value is None:
                    value = record.rel_error if record.rel_error is not None else record.rel_error_init
                total = None if value is None or total is None else total + float(value)
            sums.append(total)
        known = [v for v in sums if v is not None]
        errors.append(tuple(v if v is not None else max(known, default=0.0) for v in sums))
    return tuple(errors)


__all__ = [
    "FINAL_STATUSES",
    "CandidateRecord",
    "SurrogateStore",
    "candidate_config_hash",
    "candidate_key",
    "decision_errors",
    "load_surrogates",
    "supernet_teacher_hash",
    "surrogates_hash",
    "teacher_hash",
]
