"""The cost table: params and MACs of every candidate at its unit's input shape, plus the fixed parts.

The cost of an architecture is then a sum: ``fixed + sum over decisions of the chosen candidate's cost``
(a decision's cost sums its units). MACs are fvcore counts with the SDPA handler, reported in both conventions
(with and without the attention matmuls); ptflops counts are recorded beside them as a cross-check.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from search_spaces import SearchSpace

from ..arch import Arch
from ..atomic import write_json
from ..compact import CompactUNet, UnitChoice
from ..config_io import read_mapping
from ..errors import ConfigError
from ..ops.registry import build_op
from ..teachers import Teacher
from ..units import UnitInfo, build_unit_graph, example_unit_call, unit_infos
from .macs import MacCount, count_macs, count_macs_by_module, count_macs_ptflops, count_params

logger = logging.getLogger(__name__)
TABLE_FORMAT = "tocsr-nas/cost-table"


@dataclasses.dataclass(frozen=True)
class Cost:
    """Params and MACs (with and without the attention matmuls) of a module or an architecture."""

    params: int
    macs: int
    macs_no_attention: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.macs + other.macs, self.macs_no_attention + other.macs_no_attention)

    def __sub__(self, other: Cost) -> Cost:
        return Cost(self.params - other.params, self.macs - other.macs, self.macs_no_attention - other.macs_no_attention)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def gmacs_no_attention(self) -> float:
        return self.macs_no_attention / 1e9

    @classmethod
    def of(cls, params: int, macs: MacCount) -> Cost:
        return cls(params, macs.macs, macs.macs_no_attention)


ZERO = Cost(0, 0, 0)


def space_fingerprint(space: SearchSpace) -> str:
    """A hash of the resolved space (teacher, latent size, decisions and candidates)."""
    text = json.dumps([space.teacher, space.latent_size, [(d.name, d.units, [(c.op, c.hparams) for c in d.candidates])
                                                          for d in space.decisions]], default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class CostTable:
    """Per-candidate costs of a search space and the fixed cost of everything the space does not decide."""

    def __init__(self, space: SearchSpace, fixed: Cost, teacher_total: Cost, rows: list[dict[str, Any]],
                 latent_size: int) -> None:
        self.space = space
        self.fixed = fixed
        self.teacher_total = teacher_total
        self.latent_size = latent_size
        self.rows = rows  # one per (unit, candidate): decision, label, unit, op, params, macs, macs_no_attention, ...
        per_decision: dict[str, dict[str, list[int]]] = {d.name: {c.label: [0, 0, 0] for c in d.candidates}
                                                         for d in space.decisions}
        for row in rows:
            entry = per_decision[row["decision"]][row["label"]]
            entry[0] += row["params"]
            entry[1] += row["macs"]
            entry[2] += row["macs_no_attention"]
        self._tables = [{label: tuple(v) for label, v in per_decision[d.name].items()} for d in space.decisions]
        self._matrices = [np.array([per_decision[d.name][c.label] for c in d.candidates], dtype=np.float64)
                          for d in space.decisions]

    def cost(self, arch: Arch) -> Cost:
        """The exact cost of ``arch`` (a sum of table entries, over its canonical form)."""
        arch = self.space.canonical(arch)
        params, macs, macs_na = self.fixed.params, self.fixed.macs, self.fixed.macs_no_attention
        for (_, label), table in zip(arch.choices, self._tables, strict=True):
            p, m, mn = table[label]
            params += p
            macs += m
            macs_na += mn
        return Cost(params, macs, macs_na)

    def cost_matrix(self, indices: np.ndarray) -> np.ndarray:
        """Vectorised costs for candidate-index rows ``(N, n_decisions)`` -> ``(N, 3)`` (params, macs, macs_no_attn)."""
        indices = self.space.canonical_indices(np.asarray(indices, dtype=np.int64))
        total = np.tile(np.array([self.fixed.params, self.fixed.macs, self.fixed.macs_no_attention], dtype=np.float64),
                        (len(indices), 1))
        for i, matrix in enumerate(self._matrices):
            total += matrix[indices[:, i]]
        return total

    def ratios(self, arch: Arch) -> dict[str, float]:
        """How many times smaller than the teacher ``arch`` is (params, MACs in both conventions)."""
        cost = self.cost(arch)
        return {
            "params": self.teacher_total.params / cost.params,
            "macs": self.teacher_total.macs / cost.macs,
            "macs_no_attention": self.teacher_total.macs_no_attention / cost.macs_no_attention,
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per (unit, candidate)."""
        return pd.DataFrame(self.rows)

    # -- persistence --------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write JSON atomically (temp file, fsync, rename)."""
        path = Path(path)
        data = {
            "format": TABLE_FORMAT,
            "space": self.space.name,
            "fingerprint": space_fingerprint(self.space),
            "latent_size": self.latent_size,
            "fixed": dataclasses.asdict(self.fixed),
            "teacher_total": dataclasses.asdict(self.teacher_total),
            "rows": self.rows,
        }
        return write_json(path, data)

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace) -> CostTable:
        """Read a table saved by :meth:`save`; refuse one written for another space."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError("cost table not found", source=path)
        data = read_mapping(path)
        if data.get("format") != TABLE_FORMAT:
            raise ConfigError("not a cost table", source=path, key="format", allowed=[TABLE_FORMAT])
        if data.get("fingerprint") != space_fingerprint(space):
            raise ConfigError(f"written for space '{data.get('space')}' with other candidates, not for '{space.name}'",
                              source=path, key="fingerprint")
        return cls(space, Cost(**data["fixed"]), Cost(**data["teacher_total"]), data["rows"], data["latent_size"])


def model_inputs(teacher: Teacher, latent_size: int) -> dict[str, torch.Tensor]:
    """Batch-1 inputs of the teacher at ``latent_size`` (the resolution costs are counted at)."""
    return teacher.example_inputs(batch_size=1, latent_size=latent_size)


def model_cost(unet: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> Cost:
    """Whole-model params and fvcore MACs of one UNet call."""
    return Cost.of(count_params(unet), count_macs(unet, (), inputs))


def _unit_key(unit: UnitInfo, op: str, hparams: tuple) -> tuple:
    return (unit.module_type, unit.kind, unit.in_shape, unit.out_shape, unit.temb_channels, unit.context_shape, op,
            hparams)


@torch.no_grad()
def build_cost_table(teacher: Teacher, space: SearchSpace, *, ptflops: bool = True, progress: bool = True) -> CostTable:
    """Profile every candidate of ``space`` at its unit's input shape, and the fixed parts of the teacher.

    Candidates with identical structure and shapes (e.g. repeated up-block resnets) are counted once.
    """
    latent_size = space.latent_size or teacher.latent_size
    inputs = model_inputs(teacher, latent_size)
    unet = teacher.unet
    units = {u.path: u for u in unit_infos(build_unit_graph(unet, inputs))}
    by_module = count_macs_by_module(unet, (), inputs)
    teacher_total = Cost.of(count_params(unet), by_module[""])
    decided = [path for d in space.decisions for path in d.units]
    fixed = teacher_total
    for path in decided:
        fixed = fixed - Cost.of(count_params(unet.get_submodule(path)), by_module[path])
    cache: dict[tuple, dict[str, Any]] = {}
    rows = []
    jobs = [(d, path, c) for d in space.decisions for path in d.units for c in d.candidates]
    for decision, path, candidate in tqdm(jobs, desc=f"profiling {space.name}", disable=not progress, unit="op"):
        unit = units[path]
        key = _unit_key(unit, candidate.op, candidate.hparams)
        if key not in cache:
            module = build_op(candidate.op, unit, unet.get_submodule(path), candidate.kwargs).eval()
            args, kwargs = example_unit_call(unit, generator=torch.Generator().manual_seed(0))
            macs = count_macs(module, args, kwargs)
            cache[key] = {"params": count_params(module), "macs": macs.macs, "macs_no_attention": macs.macs_no_attention}
            if ptflops:
                cache[key]["ptflops_macs"] = count_macs_ptflops(module, args, kwargs)
        rows.append({"decision": decision.name, "label": candidate.label, "unit": path, "op": candidate.op, **cache[key]})
    logger.info("profiled %d candidate placements (%d distinct) of %s", len(rows), len(cache), space.name)
    return CostTable(space, fixed, teacher_total, rows, latent_size)


def extract_fresh(teacher: Teacher, space: SearchSpace, arch: Arch, units: dict[str, UnitInfo]) -> CompactUNet:
    """A compact UNet for ``arch`` with freshly built candidates (for counting; no trained weights needed)."""
    choices = {path: UnitChoice(c.op, c.kwargs, units[path]) for path, c in space.unit_choices(arch).items()}
    return CompactUNet.build(teacher.unet, choices, meta={"arch": str(arch)})


def verify_cost_table(table: CostTable, teacher: Teacher, archs: Iterable[Arch], *, ptflops: bool = False) -> pd.DataFrame:
    """Compare ``table.cost(arch)`` with a whole-model count of each extracted arch.

    Returns one row per arch: predicted and measured params/MACs and the relative MAC errors.
    """
    inputs = model_inputs(teacher, table.latent_size)
    units = {u.path: u for u in unit_infos(build_unit_graph(teacher.unet, inputs))}
    rows = []
    for arch in archs:
        predicted = table.cost(arch)
        compact = extract_fresh(teacher, table.space, arch, units)
        measured = model_cost(compact, inputs)
        row = {
            "arch_id": arch.arch_id,
            "arch": str(arch),
            "params_table": predicted.params,
            "params_model": measured.params,
            "macs_table": predicted.macs,
            "macs_model": measured.macs,
            "macs_no_attention_table": predicted.macs_no_attention,
            "macs_no_attention_model": measured.macs_no_attention,
            "macs_rel_error": abs(predicted.macs - measured.macs) / measured.macs,
            "macs_no_attention_rel_error": abs(predicted.macs_no_attention - measured.macs_no_attention)
            / measured.macs_no_attention,
        }
        if ptflops:
            row["ptflops_macs_model"] = count_macs_ptflops(compact, (), inputs)
        rows.append(row)
        del compact
    return pd.DataFrame(rows)
