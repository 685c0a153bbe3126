"""The distillation driver: check the surrogate folder, split the candidates over workers, collect the table."""
from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path
from typing import Any

from search_spaces import SearchSpace

from ..device import resolve_device, resolve_dtype
from ..executors import LocalExecutor, RayExecutor, executor_from_config
from ..teachers import Teacher
from ..units import UnitInfo, build_unit_graph, unit_infos
from .config import DistillConfig
from .plan import DistillPlan, worker_plan
from .store import CandidateRecord, SurrogateStore, teacher_hash
from .trainer import DistillWorker, PartitionResult, enumerate_candidates, resolve

log = logging.getLogger(__name__)

_OP_COST = {"teacher": 0.0, "identity": 0.1}  # relative training cost; other ops count 1


@dataclasses.dataclass
class DistillReport:
    """The outcome of a run: one record per candidate, timings and teacher throughput."""

    out: Path
    records: list[CandidateRecord]
    executor: str
    workers: int
    wall_s: float
    teacher_forwards: int
    teacher_s: float
    groups: int = 1

    @property
    def forwards_per_s(self) -> float:
        """Teacher forwards per second of teacher time (per worker)."""
        return self.teacher_forwards / self.teacher_s if self.teacher_s else 0.0

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.records:
            counts[record.status] = counts.get(record.status, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {"out": str(self.out), "executor": self.executor, "workers": self.workers, "groups": self.groups,
                "wall_s": self.wall_s,
                "teacher_forwards": self.teacher_forwards, "teacher_forwards_per_s": self.forwards_per_s,
                "counts": self.counts(), "failed": {r.key: r.error for r in self.records if r.status == "failed"}}


def partition(records: list[CandidateRecord], units: dict[str, UnitInfo], workers: int) -> list[tuple[str, ...]]:
    """Split candidates into ``workers`` groups of similar cost (largest first onto the least loaded worker)."""
    def cost(record: CandidateRecord) -> float:
        channels, height, width = units[record.unit].in_shape
        size = height * width * (channels + units[record.unit].out_channels)
        return size * _OP_COST.get(record.op, 1.0)

    loads, groups = [0.0] * workers, [[] for _ in range(workers)]
    for record in sorted(records, key=lambda r: (-cost(r), r.key)):
        target = loads.index(min(loads))
        loads[target] += cost(record)
        groups[target].append(record.key)
    return [tuple(g) for g in groups if g]


def distill_blocks(config: DistillConfig, out: str | Path, *, teacher: Teacher | None = None,
                   space: SearchSpace | None = None, executor: LocalExecutor | RayExecutor | None = None,
                   stop_after: int | None = None, retry_failed: bool = False,
                   dry_run: bool = False) -> DistillReport | DistillPlan:
    """Distil every candidate of ``config.space`` into the surrogate folder ``out`` (resuming what is there).

    With ``config.max_memory_gb`` the candidates are trained in unit groups sized to that budget (measured by
    probing one step, :mod:`tocsr_nas.distill.plan`); on Ray the groups (or, without a budget, one cost-balanced
    share per worker) go to long-lived actors that each load the teacher and the supernet once.

    Args:
        config: the distillation config.
        out: the surrogate folder; one trained for another space or teacher is refused.
        teacher, space: objects to use instead of loading ``config.teacher``/``config.space`` (local executor
            only: Ray workers always load them from the config).
        executor: where to run; by default the one ``config.executor`` describes (closed afterwards).
        stop_after: stop every group after this step, checkpointing (simulates a kill).
        retry_failed: train candidates that failed before again.
        dry_run: return the :class:`DistillPlan` (probing memory) without training or writing anything.
    """
    begin = time.perf_counter()
    out = Path(out)
    own_teacher = teacher is None  # loaded here: the worker may free its weights (the supernet holds a copy)
    device = resolve_device(config.device)  # a device or dtype this machine cannot run: refused before any work
    resolve_dtype(config.dtype, device)
    teacher, space, _ = resolve(config, teacher, space)
    store = SurrogateStore(out)
    header = store.header(space, teacher.name, teacher_hash(teacher.unet, space))
    store.check(header)
    own_executor = executor is None
    if executor is None and not dry_run:  # made before anything is written: a bad Ray address loses nothing
        executor = executor_from_config(config.executor)
    try:
        local = dry_run or executor.kind == "local"
        units = {u.path: u for u in unit_infos(build_unit_graph(teacher.unet, _example_inputs(teacher, space)))}
        worker = None
        if local or config.max_memory_gb is not None:
            worker = DistillWorker(config, str(out), teacher=teacher, space=space, num_threads=config.num_threads,
                                   stop_after=stop_after, retry_failed=retry_failed, release_teacher=own_teacher)
        plan = worker_plan(config, worker, probe=dry_run) if worker is not None else None
        if dry_run:
            return plan
        config_hash = config.fingerprint()
        records = enumerate_candidates(space, units, config_hash)
        store.write_manifest(header, config.model_dump(), config_hash, [store.read_record(r.key) or r for r in records])
        if plan is not None and (len(plan.groups) > 1 or not local):
            groups = [tuple(g.keys) for g in plan.groups]
        elif local:
            groups = [None]
        else:
            groups = partition(records, units, executor.num_workers)
        log.info("distilling %d candidates in %d group(s) on %s", len(records), len(groups), executor.kind)
        if local:
            results = [worker.run(keys) for keys in groups]
        else:
            del worker  # the driver's probing copy is not needed while the actors train
            threads = max(1, config.num_threads // executor.num_workers)
            pool = executor.pool(functools.partial(DistillWorker, config, str(out), num_threads=threads,
                                                   stop_after=stop_after, retry_failed=retry_failed))
            try:
                results = pool.map("run", groups)
            finally:
                pool.close()
    finally:
        if own_executor and executor is not None:
            executor.close()
    report = _merge(results, records, out, executor, time.perf_counter() - begin)
    report.groups = len(groups)
    store.write_manifest(header, config.model_dump(), config_hash, report.records)
    store.write_table(report.records)
    return report


def _example_inputs(teacher: Teacher, space: SearchSpace) -> dict[str, Any]:
    """Example inputs on the teacher's device (the unit graph traces one call)."""
    inputs = teacher.example_inputs(latent_size=space.latent_size or teacher.latent_size)
    where = next(teacher.unet.parameters()).device
    return {k: v.to(where) if hasattr(v, "to") else v for k, v in inputs.items()}


def _merge(results: list[PartitionResult], order: list[CandidateRecord], out: Path, executor: Any,
           wall_s: float) -> DistillReport:
    by_key = {r.key: r for result in results for r in result.records}
    records = [by_key[r.key] for r in order if r.key in by_key]
    return DistillReport(out=out, records=records, executor=executor.kind, workers=executor.num_workers, wall_s=wall_s,
                         teacher_forwards=sum(r.teacher_forwards for r in results),
                         teacher_s=sum(r.teacher_s for r in results))


__all__ = ["DistillPlan", "DistillReport", "distill_blocks", "partition"]
