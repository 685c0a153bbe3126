"""The latency table: measured time of every candidate at its unit's input shape, plus the fixed parts.

Like the cost table, the latency of an arch is a sum: ``fixed + sum over units of the chosen candidate's time``,
where ``fixed`` = the time of the teacher's own arch (extracted as a compact UNet, as every searched arch is) minus
the times of the units the space decides on (conv_in/out, time embedding, samplers, norms, and the per-call overhead
of the UNet itself). Every time is measured on the target: torch eager on the CPU at a given thread count
(``time.perf_counter``), on a GPU with CUDA events, or ONNX Runtime on the CPU (``runtime="onnxruntime"``: each
unit and whole model exported to ONNX, see :mod:`tocsr_nas.profiling.onnx_runtime`); each is the median over
``repeats`` timed runs after ``warmup`` calls. By default a run is a single call and the runs of all calls are
interleaved: timing one module many times in a row keeps its weights in the CPU caches and made table sums ~19%
lower than whole-model times on tiny_ldm, where single interleaved calls came within ~7%.

Measurements are cached on disk (JSON, written atomically) keyed by op, hyperparameters, unit kind and shapes,
batch, dtype, device, runtime and threads, so a second space over the same teacher (or a resumed search) measures only
what is new. :func:`verify_latency_table` times extracted whole models to check the sums.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from search_spaces import SearchSpace

from ..arch import Arch
from ..atomic import write_json
from ..device import resolve_device, resolve_dtype
from ..errors import ConfigError
from ..ops.registry import build_op
from ..teachers import Teacher
from ..units import build_unit_graph, example_unit_call, unit_infos
from .cost_table import extract_fresh, model_inputs, space_fingerprint
from .onnx_runtime import OnnxRuntimeCall, require_onnxruntime

logger = logging.getLogger(__name__)
CACHE_FORMAT = "tocsr-nas/latency-cache"
RUNTIMES = ("torch", "onnxruntime")


@dataclasses.dataclass(frozen=True)
class LatencyTarget:
    """Where and how latency is measured."""

    device: str = "cpu"  # resolved by tocsr_nas.device: auto, cpu, cuda, cuda:N (stored as the concrete device)
    dtype: str = "float32"  # float32, bfloat16, float16 (one the device runs)
    batch_size: int = 1
    threads: int = 1  # CPU intra-op threads while timing (ignored on a GPU)
    warmup: int = 3
    repeats: int = 9
    min_run_ms: float = 0.0  # 0: every timed run is one call (caches as cold as inside a whole model)
    runtime: str = "torch"  # or "onnxruntime" (CPU, float32; needs the extra ``onnx``)

    def __post_init__(self) -> None:
        """Validate, and store the concrete device (``auto`` resolved) and dtype name: they are part of the key."""
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"unknown runtime '{self.runtime}'", key="runtime", allowed=list(RUNTIMES))
        device = resolve_device(self.device)
        object.__setattr__(self, "device", str(device))
        object.__setattr__(self, "dtype", str(resolve_dtype(self.dtype, device)).removeprefix("torch."))
        if self.runtime == "onnxruntime":
            if (self.device, self.dtype) != ("cpu", "float32"):
                raise ConfigError(f"runtime 'onnxruntime' times on the CPU in float32 only, got {self.device}/"
                                  f"{self.dtype}", key="runtime")
            require_onnxruntime()
        for name in ("batch_size", "threads", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"must be >= 1, got {getattr(self, name)}", key=name)
        if self.warmup < 0 or self.min_run_ms < 0:
            raise ConfigError("warmup and min_run_ms must be >= 0", key="warmup")

    @property
    def key(self) -> str:
        """The part of a cache key that names the target."""
        threads = self.threads if self.device == "cpu" else 0
        runtime = "" if self.runtime == "torch" else f"{self.runtime}:"
        return f"{runtime}{self.device}|{self.dtype}|b{self.batch_size}|t{threads}"


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run torch with ``threads`` intra-op threads, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_many(calls: dict[str, Callable[[], Any]], target: LatencyTarget) -> dict[str, float]:
    """Median milliseconds of one call of each of ``calls`` on ``target``.

    Interleaved: after the warm-up, each of ``repeats`` rounds times every call once (a run of as many calls as
    fill ``min_run_ms``), so a change of machine load during the measurement shifts all of them alike.
    """
    cuda = target.device.startswith("cuda")

    def run(call: Callable[[], Any], number: int) -> float:
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(number):
                call()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / number
        begin = time.perf_counter()
        for _ in range(number):
            call()
        return (time.perf_counter() - begin) * 1e3 / number

    samples: dict[str, list[float]] = {key: [] for key in calls}
    with torch.no_grad(), torch_threads(target.threads):
        numbers = {}
        for key, call in calls.items():
            for _ in range(target.warmup):
                call()
            numbers[key] = max(1, int(target.min_run_ms / max(run(call, 1), 1e-3)))
        for _ in range(target.repeats):
            for key, call in calls.items():
                samples[key].append(run(call, numbers[key]))
    return {key: statistics.median(values) for key, values in samples.items()}


def _cast(value: Any, target: LatencyTarget) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.to(target.device)
        return value.to(getattr(torch, target.dtype)) if value.is_floating_point() else value
    return value


def _on_target(module: torch.nn.Module, target: LatencyTarget) -> torch.nn.Module:
    """``module`` in eval mode on the target's device and dtype (moved only when it is elsewhere)."""
    param = next(module.parameters(), None)
    if param is not None and (str(param.device) != target.device or param.dtype != getattr(torch, target.dtype)):
        module = module.to(device=target.device, dtype=getattr(torch, target.dtype))
    return module.eval()


class LatencyCache:
    """Measured milliseconds by key, persisted as JSON (``None`` path: in memory only)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, float] = {}
        if self.path is not None and self.path.is_file():
            data = json.loads(self.path.read_text())
            if data.get("format") != CACHE_FORMAT:
                raise ConfigError("not a latency cache", source=self.path, key="format", allowed=[CACHE_FORMAT])
            self.entries = {k: float(v) for k, v in data["entries"].items()}

    def missing(self, keys: Iterable[str]) -> list[str]:
        return [key for key in dict.fromkeys(keys) if key not in self.entries]

    def save(self) -> None:
        if self.path is not None:
            write_json(self.path, {"format": CACHE_FORMAT, "torch": torch.__version__, "entries": self.entries})


class LatencyTable:
    """Per-candidate milliseconds of a space on one target, the fixed part and the whole teacher's time."""

    def __init__(self, space: SearchSpace, target: LatencyTarget, fixed_ms: float, teacher_ms: float,
                 rows: list[dict[str, Any]]) -> None:
        self.space, self.target, self.fixed_ms, self.teacher_ms, self.rows = space, target, fixed_ms, teacher_ms, rows
        per: dict[str, dict[str, float]] = {d.name: {c.label: 0.0 for c in d.candidates} for d in space.decisions}
        for row in rows:
            per[row["decision"]][row["label"]] += row["ms"]
        self._tables = [per[d.name] for d in space.decisions]

    def cost(self, arch: Arch) -> float:
        """Predicted milliseconds of one call of ``arch``'s UNet: fixed part + sum over its units."""
        return self.fixed_ms + sum(table[label] for (_, label), table in zip(arch.choices, self._tables, strict=True))

    def to_frame(self) -> pd.DataFrame:
        """One row per (unit, candidate)."""
        return pd.DataFrame(self.rows)


def _unit_key(unit: Any, op: str, hparams: tuple) -> str:
    text = json.dumps([unit.module_type, unit.kind, unit.in_shape, unit.out_shape, unit.temb_channels,
                       unit.context_shape, op, hparams], default=str)
    return f"unit:{hashlib.sha1(text.encode()).hexdigest()[:16]}"


def _model_key(teacher: Teacher, latent_size: int) -> str:
    text = json.dumps([dict(teacher.unet.config), latent_size], default=str, sort_keys=True)
    return f"compact-teacher:{hashlib.sha1(text.encode()).hexdigest()[:16]}"


def module_call(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any], target: LatencyTarget) -> Callable[[], Any]:
    """A zero-argument call of ``module(*args, **kwargs)`` on the target (module and tensors moved there)."""
    module = _on_target(module, target)
    args = tuple(_cast(a, target) for a in args)
    kwargs = {k: _cast(v, target) for k, v in kwargs.items()}
    if target.runtime == "onnxruntime":
        return OnnxRuntimeCall(module, args, kwargs, target.threads)
    return lambda: module(*args, **kwargs)


def model_call(unet: torch.nn.Module, inputs: dict[str, torch.Tensor], target: LatencyTarget) -> Callable[[], Any]:
    """A zero-argument call of ``unet`` on ``inputs``, both on the target."""
    return module_call(unet, (), inputs, target)


@dataclasses.dataclass
class TablePlan:
    """What a latency table of a space needs measured: one call per distinct key (units and the whole teacher)."""

    space: SearchSpace
    target: LatencyTarget
    rows: list[dict[str, Any]]  # decision, label, unit, op, key
    decided_keys: list[str]  # the teacher's own module at every decided unit
    model_key: str
    calls: dict[str, Callable[[], Any]]

    def table(self, times: dict[str, float]) -> LatencyTable:
        """The table from measured ``times`` (by key)."""
        teacher_ms = times[self.model_key]
        fixed_ms = teacher_ms - sum(times[k] for k in self.decided_keys)
        if fixed_ms < 0:  # the units alone took longer than the whole model: noise (a loaded machine, few repeats)
            logger.warning("latency table: fixed part measured %.3f ms < 0 (noisy timings; more repeats help): "
                           "using 0", fixed_ms)
            fixed_ms = 0.0
        rows = [{**{k: v for k, v in row.items() if k != "key"}, "ms": times[row["key"]]} for row in self.rows]
        return LatencyTable(self.space, self.target, fixed_ms, teacher_ms, rows)


def plan_latency_table(teacher: Teacher, space: SearchSpace, target: LatencyTarget) -> TablePlan:
    """The distinct calls a latency table of ``space`` on ``target`` needs (modules built lazily on first call)."""
    latent_size = space.latent_size or teacher.latent_size
    unet = teacher.unet.eval()
    units = {u.path: u for u in unit_infos(build_unit_graph(unet, model_inputs(teacher, latent_size)))}
    calls: dict[str, Callable[[], Any]] = {}

    def unit_call(path: str, op: str, hparams: tuple, kwargs: dict[str, Any]) -> str:
        unit = units[path]
        key = f"{_unit_key(unit, op, hparams)}|{target.key}"
        if key not in calls:
            module = build_op(op, unit, unet.get_submodule(path), kwargs)
            args, call_kwargs = example_unit_call(unit, batch_size=target.batch_size,
                                                  generator=torch.Generator().manual_seed(0))
            calls[key] = module_call(module, args, call_kwargs, target)
        return key

    rows = [{"decision": d.name, "label": c.label, "unit": path, "op": c.op,
             "key": unit_call(path, c.op, c.hparams, c.kwargs)}
            for d in space.decisions for path in d.units for c in d.candidates]
    decided = [unit_call(path, "teacher", (), {}) for d in space.decisions for path in d.units]
    model_key = f"{_model_key(teacher, latent_size)}|{target.key}"
    whole = extract_fresh(teacher, space, space.teacher_arch(), units)  # timed as searched archs are: compact
    calls[model_key] = model_call(whole, teacher.example_inputs(batch_size=target.batch_size,
                                                                latent_size=latent_size), target)
    return TablePlan(space, target, rows, decided, model_key, calls)


def build_latency_table(teacher: Teacher, space: SearchSpace, target: LatencyTarget | None = None, *,
                        cache: LatencyCache | None = None) -> LatencyTable:
    """Time every candidate of ``space`` at its unit's input shape on ``target``, and the whole teacher.

    Candidates with identical structure and shapes are timed once, and only when ``cache`` lacks them. The
    teacher's modules are moved to the target's device and dtype while timing, and back to the CPU in fp32 after.
    """
    target = target or LatencyTarget()
    cache = cache or LatencyCache(None)
    plan = plan_latency_table(teacher, space, target)
    todo = cache.missing(plan.calls)
    if todo:
        cache.entries.update(measure_many({key: plan.calls[key] for key in todo}, target))
        cache.save()
    if target.device != "cpu" or target.dtype != "float32":
        teacher.unet.to(device="cpu", dtype=torch.float32)
    table = plan.table(cache.entries)
    logger.info("latency table of %s on %s: %d placements, %d timed now; teacher %.3f ms, fixed %.3f ms",
                space.name, target.key, len(plan.rows), len(todo), table.teacher_ms, table.fixed_ms)
    return table


def verify_latency_table(table: LatencyTable, teacher: Teacher, archs: Iterable[Arch]) -> pd.DataFrame:
    """Time each arch's extracted whole UNet (interleaved) beside ``table.cost(arch)``; one row per arch."""
    latent_size = table.space.latent_size or teacher.latent_size
    inputs = teacher.example_inputs(batch_size=table.target.batch_size, latent_size=latent_size)
    units = {u.path: u for u in unit_infos(build_unit_graph(teacher.unet, model_inputs(teacher, latent_size)))}
    archs = list(archs)
    calls = {arch.arch_id: model_call(extract_fresh(teacher, table.space, arch, units), inputs, table.target)
             for arch in archs}
    measured = measure_many(calls, table.target)
    return compare_latency(table, archs, measured)


def compare_latency(table: LatencyTable, archs: Iterable[Arch], measured: dict[str, float]) -> pd.DataFrame:
    """Predicted (table sum) vs measured whole-model milliseconds by arch id, with the relative error."""
    rows = []
    for arch in archs:
        predicted, ms = table.cost(arch), measured[arch.arch_id]
        rows.append({"arch_id": arch.arch_id, "arch": str(arch), "ms_table": predicted, "ms_model": ms,
                     "rel_error": abs(predicted - ms) / ms})
    return pd.DataFrame(rows)


def latency_fingerprint(table: LatencyTable) -> str:
    """Identifies a latency table's space and target (for evaluator fingerprints)."""
    return f"{space_fingerprint(table.space)}:{table.target.key}"
