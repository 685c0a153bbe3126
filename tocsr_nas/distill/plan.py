"""Memory-aware distillation: group units so that one step of a group fits a memory budget.

A group is a run of consecutive units (in forward order) with all their candidates; its estimated peak is
``base`` (teacher + supernet resident) + ``forward`` (one teacher forward recording every unit) + the sum of its
units' measured step costs (:meth:`~tocsr_nas.distill.trainer.DistillWorker.probe`). Every group costs its own
teacher forwards (one per step, plus the held-out evaluations before and after training); within a group one
forward still feeds all of its candidates. Candidates learn the same thing whatever the grouping: each sees
the same seeded batches and has its own parameters and optimiser.
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from .config import DistillConfig
    from .trainer import DistillWorker

GIB = 1024 ** 3


@dataclasses.dataclass
class MemoryProbe:
    """Measured bytes: resident before the step, the teacher forward's peak, each unit's candidates' step."""

    base: float
    forward: float
    units: dict[str, float]

    def estimate(self, units: list[str]) -> float:
        """Estimated peak bytes of one step of a group made of ``units``."""
        return self.base + self.forward + sum(self.units[u] for u in units)


@dataclasses.dataclass
class DistillGroup:
    """One unit group: its units, its candidate keys, its estimated peak and its teacher forwards."""

    units: list[str]
    keys: list[str]
    estimate_bytes: float
    teacher_forwards: int


@dataclasses.dataclass
class DistillPlan:
    """The groups of a run, in order, and what the whole run costs in teacher forwards."""

    groups: list[DistillGroup]
    budget_bytes: float | None
    device: str
    probe: MemoryProbe | None

    @property
    def teacher_forwards(self) -> int:
        return sum(g.teacher_forwards for g in self.groups)

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "budget_gb": None if self.budget_bytes is None else self.budget_bytes / GIB,
                "teacher_forwards": self.teacher_forwards,
                "probe": None if self.probe is None else {"base_gb": self.probe.base / GIB,
                                                          "forward_gb": self.probe.forward / GIB},
                "groups": [{"units": g.units, "candidates": len(g.keys), "estimate_gb": g.estimate_bytes / GIB,
                            "teacher_forwards": g.teacher_forwards} for g in self.groups]}

    def describe(self) -> str:
        """The plan as text lines (what ``distill-blocks --dry-run`` prints)."""
        budget = "none" if self.budget_bytes is None else f"{self.budget_bytes / GIB:.2f} GiB"
        lines = [(f"device {self.device}, memory budget {budget}: {len(self.groups)} group(s), "
                  f"{sum(len(g.keys) for g in self.groups)} candidates, {self.teacher_forwards} teacher forwards")]
        if self.probe is not None:
            lines.append(f"measured: resident {self.probe.base / GIB:.2f} GiB, teacher forward "
                         f"+{self.probe.forward / GIB:.3f} GiB")
        for index, group in enumerate(self.groups):
            span = group.units[0] if len(group.units) == 1 else f"{group.units[0]} .. {group.units[-1]}"
            lines.append(f"group {index}: {len(group.units)} unit(s) ({span}), {len(group.keys)} candidates, "
                         f"~{group.estimate_bytes / GIB:.2f} GiB, {group.teacher_forwards} teacher forwards")
        return "\n".join(lines)


def forwards_per_group(steps: int, held_out_batches: int) -> int:
    """Teacher forwards of one group: one per step, and the held-out set before and after training."""
    return steps + 2 * held_out_batches


def plan_groups(keys_by_unit: dict[str, list[str]], probe: MemoryProbe | None, budget_gb: float | None, *,
                forwards: int, device: str) -> DistillPlan:
    """Pack consecutive units (``keys_by_unit`` in forward order) into groups whose estimate fits ``budget_gb``.

    Without a budget everything is one group. A budget below the smallest possible group (one unit) is a
    one-line :class:`ConfigError`.
    """
    units = list(keys_by_unit)
    if budget_gb is None or probe is None:
        estimate = probe.estimate(units) if probe is not None else math.nan
        group = DistillGroup(units, [k for u in units for k in keys_by_unit[u]], estimate, forwards)
        return DistillPlan([group], None if budget_gb is None else budget_gb * GIB, device, probe)
    budget = budget_gb * GIB
    biggest = max(units, key=lambda u: probe.units[u])
    if probe.estimate([biggest]) > budget:
        raise ConfigError(f"memory budget {budget_gb:g} GiB is smaller than the smallest group: unit {biggest} "
                          f"needs ~{probe.estimate([biggest]) / GIB:.2f} GiB on {device}", key="max_memory_gb")
    groups: list[list[str]] = [[]]
    for unit in units:
        if groups[-1] and probe.estimate([*groups[-1], unit]) > budget:
            groups.append([])
        groups[-1].append(unit)
    return DistillPlan([DistillGroup(g, [k for u in g for k in keys_by_unit[u]], probe.estimate(g), forwards)
                        for g in groups], budget, device, probe)


def worker_plan(config: DistillConfig, worker: DistillWorker, *, probe: bool = False) -> DistillPlan:
    """The unit groups ``distill-blocks`` trains ``worker``'s candidates in: probed and packed when
    ``config.max_memory_gb`` is set (or ``probe`` asks for the memory figures anyway), else one group."""
    keys_by_unit: dict[str, list[str]] = {}
    for record in worker.all_records:
        keys_by_unit.setdefault(record.unit, []).append(record.key)
    measured = worker.probe() if (config.max_memory_gb is not None or probe) else None
    held_out = math.ceil(config.held_out_samples / config.batch_size)
    return plan_groups(keys_by_unit, measured, config.max_memory_gb, forwards=forwards_per_group(config.steps, held_out),
                       device=str(worker.device))


__all__ = ["GIB", "DistillGroup", "DistillPlan", "MemoryProbe", "forwards_per_group", "plan_groups", "worker_plan"]
