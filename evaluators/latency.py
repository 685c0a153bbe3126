"""The ``latency`` evaluator: milliseconds per UNet call from a latency table measured on the target (cheap).

The table (:mod:`tocsr_nas.profiling.latency`) is measured once per search target and cached on disk
(``latency_cache.json`` in the search folder unless ``cache`` names another file), so the evaluator itself only
sums table entries. Usable as the cost objective (``objectives: [loss, latency_ms]``) and as a constraint
(``max_latency_ms``): an arch over the bound is infeasible and never reaches the expensive evaluators.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from tocsr_nas.arch import Arch
from tocsr_nas.errors import ConfigError
from tocsr_nas.profiling.latency import (
    LatencyCache,
    LatencyTable,
    LatencyTarget,
    build_latency_table,
    latency_fingerprint,
)

from .base import Evaluator, register_evaluator
from .context import EvaluationContext

CACHE_FILE = "latency_cache.json"


class LatencyEvaluator(Evaluator):
    """``latency_ms`` (predicted by the table) and ``latency_ratio`` (teacher time / arch time); optional bound."""

    name = "latency"
    cheap = True

    def __init__(self, table: LatencyTable, *, max_latency_ms: float | None = None) -> None:
        if max_latency_ms is not None and max_latency_ms <= 0:
            raise ConfigError(f"must be > 0, got {max_latency_ms}", key="max_latency_ms")
        self.table, self.max_latency_ms = table, max_latency_ms

    def evaluate(self, arch: Arch, budget: int | None = None) -> dict[str, float]:
        ms = self.table.cost(arch)
        return {"latency_ms": ms, "latency_ratio": self.table.teacher_ms / ms}

    def feasible(self, metrics: dict[str, float]) -> bool:
        return self.max_latency_ms is None or metrics["latency_ms"] <= self.max_latency_ms

    @property
    def fingerprint(self) -> str:
        text = f"{latency_fingerprint(self.table)}:{self.max_latency_ms}"
        return f"latency:{hashlib.sha1(text.encode()).hexdigest()[:12]}"


@register_evaluator("latency")
def latency_evaluator(context: EvaluationContext, *, device: str = "cpu", dtype: str = "float32",
                      batch_size: int = 1, threads: int = 1, warmup: int = 3, repeats: int = 9,
                      runtime: str = "torch", cache: str | None = None) -> LatencyEvaluator:
    """The search's ``latency`` evaluator: the table measured on ``device`` with ``runtime`` (``torch`` or
    ``onnxruntime``; cached), bounded by ``max_latency_ms``. ``cache`` is a JSON file (relative to the search
    folder), shared between searches."""
    target = LatencyTarget(device=device, dtype=dtype, batch_size=batch_size, threads=threads, warmup=warmup,
                           repeats=repeats, runtime=runtime)
    path = context.cache_dir / Path(cache or CACHE_FILE)
    table = build_latency_table(context.teacher, context.space, target, cache=LatencyCache(path))
    return LatencyEvaluator(table, max_latency_ms=context.constraints.get("latency_ms"))
