"""One distillation worker: one teacher forward per step feeds one optimisation step of every candidate it owns.

Each candidate has its own parameters and Adam state and learns to reproduce its teacher unit's output from
the unit's recorded input (``teacher-input``) or from the input a fixed student path produces
(``student-input``). The teacher runs under ``torch.no_grad``; candidates see detached activations.
A candidate whose loss turns NaN/inf, whose output has the wrong shape, or that raises, is marked ``failed``
and the others go on.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

import search_spaces
from search_spaces import SearchSpace

from ..device import autocast, peak_memory, resolve_device, resolve_dtype, to_float, track_cpu_memory
from ..supernet import Supernet
from ..teachers import Teacher, load_teacher
from ..training.config import LoopConfig
from ..training.loop import learning_rate
from ..units import UnitInfo
from .cache import ActivationCache
from .capture import UnitCall, call_unit, capture_units
from .config import DistillConfig
from .inputs import UNetCalls, build_latent_source, noise_scheduler
from .losses import RelativeError, get_loss
from .plan import MemoryProbe
from .store import (
    CandidateRecord,
    SurrogateStore,
    candidate_config_hash,
    candidate_key,
    load_surrogates,
    teacher_hash,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Candidate:
    """A candidate being distilled: its module, optimiser and record."""

    unit: UnitInfo
    module: nn.Module
    record: CandidateRecord
    optimizer: torch.optim.Optimizer | None = None


@dataclasses.dataclass
class PartitionResult:
    """Records of the candidates a worker owns, and its throughput."""

    records: list[CandidateRecord]
    teacher_forwards: int
    teacher_s: float
    wall_s: float


def enumerate_candidates(space: SearchSpace, units: dict[str, UnitInfo], config_hash: str) -> list[CandidateRecord]:
    """A fresh record for every (unit, candidate) of ``space``, in forward order."""
    records = []
    for decision in space.decisions:
        for path in decision.units:
            for candidate in decision.candidates:
                records.append(CandidateRecord(
                    key=candidate_key(path, candidate.label), unit=path, decision=decision.name,
                    label=candidate.label, op=candidate.op, hparams=candidate.kwargs,
                    config_hash=candidate_config_hash(config_hash, path, candidate.op, candidate.kwargs)))
    return sorted(records, key=lambda r: units[r.unit].order)


def resolve(config: DistillConfig, teacher: Teacher | None = None,
            space: SearchSpace | None = None) -> tuple[Teacher, SearchSpace, str]:
    """The teacher, space and teacher spec a config names (given objects are used as they are)."""
    space = space if space is not None else search_spaces.load(config.space)
    spec = config.teacher or space.teacher
    teacher = teacher if teacher is not None else load_teacher(spec, seed=config.seed)
    return teacher, space, spec


class DistillWorker:
    """Holds the teacher, the supernet and the seeded data streams once, and trains groups of candidates.

    Args:
        config: the distillation config (its ``device``/``dtype`` decide where everything runs).
        out: the surrogate folder.
        teacher, space: objects to use instead of loading ``config.teacher``/``config.space``.
        num_threads: torch CPU threads.
        stop_after: stop every group after this step, checkpointing (simulates a kill in tests).
        retry_failed: train candidates that failed before again.
        release_teacher: free the teacher UNet's weights once the supernet (which holds a copy) is built; the
            supernet's teacher path then runs the teacher forwards (the same modules: the same features). Always
            done for a teacher this worker loads itself; a given one is only released when asked.
    """

    def __init__(self, config: DistillConfig, out: str, *, teacher: Teacher | None = None,
                 space: SearchSpace | None = None, num_threads: int = 1, stop_after: int | None = None,
                 retry_failed: bool = False, release_teacher: bool = False) -> None:
        self.config, self.stop_after, self.retry_failed = config, stop_after, retry_failed
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        torch.set_num_threads(num_threads)
        release_teacher = release_teacher or teacher is None
        self.teacher, self.space, spec = resolve(self.config, teacher, space)
        self.teacher.unet.eval().requires_grad_(False)
        torch.manual_seed(self.config.seed)  # candidates initialise from torch's global generator
        self.supernet = Supernet(self.teacher, self.space).to(self.device)
        self.student = self._student() if self.config.mode == "student-input" else None
        self.teacher_weights = teacher_hash(self.teacher.unet, self.space) if self.config.cache_dir else None
        if release_teacher and self.supernet.active_arch == self.space.teacher_arch():
            self.teacher.unet.to("meta")  # frees the weights, keeps the config
            self.unet = self.supernet.unet
        else:
            self.unet = self.teacher.unet.to(self.device)
        self.store = SurrogateStore(out)
        self.loss_fn = get_loss(self.config.loss)
        latent_size = self.config.latent_size or self.space.latent_size or self.teacher.latent_size
        scheduler = noise_scheduler(spec)
        length = self.config.steps * self.config.batch_size
        self.train_calls = UNetCalls(self.teacher, build_latent_source(
            self.config.latents, self.teacher, latent_size, length=length, seed=self.config.seed),
            scheduler, self.config.timesteps, self.config.seed)
        held_out_length = math.ceil(self.config.held_out_samples / self.config.batch_size) * self.config.batch_size
        self.held_out_calls = UNetCalls(self.teacher, build_latent_source(
            self.config.latents, self.teacher, latent_size, length=held_out_length, seed=self.config.seed,
            held_out=True), scheduler, self.config.timesteps, self.config.seed + 1)
        self.cache: ActivationCache | None = None  # opened by the first run (a dry run writes nothing)
        self.teacher_forwards, self.teacher_s = 0, 0.0
        self.all_records = enumerate_candidates(self.space, self.supernet.units, self.config.fingerprint())
        self.records, self.units = self.all_records, list(self.supernet.units.values())

    def _select(self, keys: tuple[str, ...] | list[str] | None) -> None:
        """Own the candidates ``keys`` (``None``: all) and their units."""
        wanted = set(keys) if keys is not None else None
        self.records = [dataclasses.replace(r) for r in self.all_records if wanted is None or r.key in wanted]
        self.units = [self.supernet.units[p] for p in dict.fromkeys(r.unit for r in self.records)]

    def _student(self) -> nn.Module:
        """The fixed student path of ``student-input`` mode (weights from ``student_surrogates`` if given)."""
        arch = self.space.parse(self.config.student_arch)
        if self.config.student_surrogates is None:
            return self.supernet.extract(arch).to(self.device)
        torch.manual_seed(self.config.seed)
        source = Supernet(self.teacher, self.space)
        load_surrogates(source, self.config.student_surrogates)
        return source.extract(arch).to(self.device)

    # -- teacher (and student) activations --------------------------------------------------------------------
    @torch.no_grad()
    def unit_calls(self, calls: UNetCalls, index: int) -> dict[str, UnitCall]:
        """The inputs and target outputs of every owned unit for UNet call number ``index``."""
        key = None if calls is self.held_out_calls else index
        if self.cache is not None and key is not None:
            cached = self.cache.get(key, self.units)
            if cached is not None:
                return {path: self._keep(call) for path, call in cached.items()}
        inputs = self._inputs(calls, index)
        units = list(self.supernet.units.values()) if self.cache is not None else self.units
        records = self._teacher_forward(inputs, units)
        if self.cache is not None and key is not None:
            self.cache.put(key, records)
        if self.student is not None:
            with capture_units(self.student, self.units, outputs=False) as student, \
                    autocast(self.device, self.dtype):
                self.student(**inputs)
            for path, call in student.items():
                call.output = records[path].output
            records = {path: self._keep(call) for path, call in student.items()}
        return {u.path: records[u.path] for u in self.units}

    def _inputs(self, calls: UNetCalls, index: int) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in calls.batch(index, self.config.batch_size).items()}

    @torch.no_grad()
    def _teacher_forward(self, inputs: dict[str, torch.Tensor], units: list[UnitInfo]) -> dict[str, UnitCall]:
        """One teacher forward under autocast, recording ``units`` (float32, offloaded if configured)."""
        begin = time.perf_counter()
        with capture_units(self.unet, units) as records, autocast(self.device, self.dtype):
            self.unet(**inputs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.teacher_forwards += 1
        self.teacher_s += time.perf_counter() - begin
        return {path: self._keep(call) for path, call in records.items()}

    def _keep(self, call: UnitCall) -> UnitCall:
        """``call`` in float32, on the CPU when activations are offloaded, else on the device."""
        where = torch.device("cpu") if self.config.offload_activations else self.device
        return UnitCall(*(None if t is None else to_float(t).to(where) for t in
                          (call.hidden, call.temb, call.context, call.output)))

    def _on_device(self, call: UnitCall) -> UnitCall:
        if not self.config.offload_activations:
            return call
        return UnitCall(*(None if t is None else t.to(self.device, non_blocking=True) for t in
                          (call.hidden, call.temb, call.context, call.output)))

    def probe(self) -> MemoryProbe:
        """Measure one step: the teacher forward recording every unit, then each unit's trainable candidates
        taking one Adam step together (on copies, with the random state restored: training is unchanged).

        A unit's figure is at least the exact size of its candidates' gradients and Adam state (12 bytes per
        trainable parameter): a CPU probe may miss memory the allocator re-uses."""
        if self.device.type == "cpu":
            track_cpu_memory()
        self._select(None)
        forwards, seconds = self.teacher_forwards, self.teacher_s
        inputs = self._inputs(self.train_calls, 0)
        with peak_memory(self.device) as forward:
            calls = self._teacher_forward(inputs, self.units)
        self.teacher_forwards, self.teacher_s = forwards, seconds
        steps: dict[str, float] = {}
        devices = [self.device] if self.device.type == "cuda" else []
        for unit in self.units:
            with torch.random.fork_rng(devices=devices), peak_memory(self.device) as step:
                copies = []
                for record in self.records:
                    if record.unit != unit.path or record.op == "teacher":
                        continue
                    module = copy.deepcopy(self.supernet.candidate_module(record.unit, record.label)).requires_grad_(True)
                    params = list(module.parameters())
                    if params:
                        optimizer = torch.optim.Adam(params, lr=self.config.lr)
                        copies.append(Candidate(unit, module, dataclasses.replace(record), optimizer))
                        self.train_step(copies[-1], calls[unit.path], self.config.lr)
                del copies
            state = 12 * sum(p.numel() for r in self.records if r.unit == unit.path and r.op != "teacher"
                             for p in self.supernet.candidate_module(r.unit, r.label).parameters())
            steps[unit.path] = max(step["delta"], float(state))
        return MemoryProbe(base=forward["start"], forward=forward["delta"], units=steps)

    # -- candidates -------------------------------------------------------------------------------------------
    def _prepare(self) -> list[Candidate]:
        """Restore finished and checkpointed candidates; the rest start fresh."""
        candidates = []
        for fresh in self.records:
            module = self.supernet.candidate_module(fresh.unit, fresh.label)
            fresh.params = sum(p.numel() for p in module.parameters())
            fresh.steps = self.config.steps
            existing = self.store.read_record(fresh.key)
            candidate = Candidate(self.supernet.units[fresh.unit], module, fresh)
            if existing is not None and existing.config_hash == fresh.config_hash:
                retry = existing.status == "failed" and self.retry_failed
                if existing.status in ("done", "teacher", "fixed", "failed") and not retry:
                    candidate.record = existing
                    candidates.append(candidate)
                    continue
            if fresh.op == "teacher":
                fresh.status = "teacher"
            elif fresh.params == 0:
                fresh.status = "fixed"
            else:
                module.requires_grad_(True)  # built from the frozen teacher copy: parts may have come in frozen
                candidate.optimizer = torch.optim.Adam(module.parameters(), lr=self.config.lr)
                # a checkpoint counts only with its record (written after it): a kill between the two leaves a
                # checkpoint whose candidate restarts from scratch, as the uninterrupted run had it at that point
                step = self.store.load_checkpoint(fresh, module, candidate.optimizer) if existing else None
                if step is not None:
                    fresh.step, fresh.rel_error_init = step, existing.rel_error_init
                    log.info("resuming %s at %s from step %d", fresh.label, fresh.unit, step)
            candidate.record = fresh
            candidates.append(candidate)
        return candidates

    def evaluate(self, candidates: list[Candidate]) -> list[float]:
        """Held-out relative error (MSE / variance of the teacher output) of each candidate."""
        meters = [RelativeError() for _ in candidates]
        batches = math.ceil(self.config.held_out_samples / self.config.batch_size)
        for module in (c.module for c in candidates):
            module.eval()
        with torch.no_grad():
            for index in range(batches):
                calls = self.unit_calls(self.held_out_calls, index)
                for meter, candidate in zip(meters, candidates):
                    call = self._on_device(calls[candidate.unit.path])
                    try:
                        meter.update(call_unit(candidate.module, candidate.unit.kind, call), call.output)
                    except Exception as err:  # noqa: BLE001 (a broken candidate must not stop the others)
                        _fail(candidate, f"evaluation: {type(err).__name__}: {err}")
        return [m.value() if c.record.status != "failed" else math.nan for m, c in zip(meters, candidates)]

    def train_step(self, candidate: Candidate, call: UnitCall, lr: float) -> float | None:
        """One Adam step of ``candidate`` on ``call``; marks it failed (returns None) on any problem."""
        record, module = candidate.record, candidate.module
        module.train()
        call = self._on_device(call)
        try:
            if self.config.gradient_checkpointing:
                prediction = checkpoint(call_unit, module, candidate.unit.kind, call, use_reentrant=False)
            else:
                prediction = call_unit(module, candidate.unit.kind, call)
        except Exception as err:  # noqa: BLE001
            return _fail(candidate, f"step {record.step}: {type(err).__name__}: {err}")
        if prediction.shape != call.output.shape:
            return _fail(candidate, f"output shape {tuple(prediction.shape)} != teacher {tuple(call.output.shape)}")
        loss = self.loss_fn(prediction, call.output)
        if not torch.isfinite(loss):
            return _fail(candidate, f"step {record.step}: loss is {loss.item()}")
        optimizer = candidate.optimizer
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            norm = nn.utils.clip_grad_norm_(module.parameters(), self.config.grad_clip)
            if not torch.isfinite(norm):
                return _fail(candidate, f"step {record.step}: gradient norm is {norm.item()}")
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        return loss.detach().item()

    def run(self, keys: tuple[str, ...] | list[str] | None = None) -> PartitionResult:
        """Train the candidates ``keys`` (``None``: all) to ``config.steps`` (or ``stop_after``), checkpointing."""
        begin = time.perf_counter()
        self._select(keys)
        self.teacher_forwards, self.teacher_s = 0, 0.0
        if self.config.cache_dir is not None and self.student is None and self.cache is None:
            self.cache = ActivationCache(self.config.cache_dir, self.config, self.teacher_weights)
        candidates = self._prepare()
        fresh = [c for c in candidates if c.record.rel_error_init is None and c.record.status != "failed"]
        if fresh:
            for candidate, value in zip(fresh, self.evaluate(fresh)):
                candidate.record.rel_error_init = value
                if candidate.record.status in ("teacher", "fixed"):
                    candidate.record.rel_error = value
                    self.store.write_record(candidate.record)
        training = [c for c in candidates if c.record.status == "training"]
        schedule = LoopConfig(steps=self.config.steps, batch_size=self.config.batch_size, lr=self.config.lr,
                              min_lr_ratio=self.config.min_lr_ratio, warmup_steps=self.config.warmup_steps)
        end = self.config.steps if self.stop_after is None else min(self.config.steps, self.stop_after)
        start = min((c.record.step for c in training), default=end)
        progress = tqdm(total=self.config.steps, initial=start, desc="distill", unit="step", disable=None)
        losses: dict[str, float] = {}
        for step in range(start, end):
            active = [c for c in training if c.record.status == "training" and c.record.step == step]
            if active:
                calls = self.unit_calls(self.train_calls, step)
                lr = learning_rate(schedule, step)
                for candidate in active:
                    tick = time.perf_counter()
                    loss = self.train_step(candidate, calls[candidate.unit.path], lr)
                    candidate.record.wall_s += time.perf_counter() - tick
                    if loss is None:
                        self.store.write_record(candidate.record)
                        continue
                    candidate.record.step = step + 1
                    candidate.record.train_loss = loss
                    losses[candidate.record.key] = loss
            done = step + 1
            if done % self.config.checkpoint_every == 0 and done < self.config.steps:
                for candidate in active:
                    if candidate.record.status == "training":
                        self.store.save_checkpoint(candidate.record, candidate.module, candidate.optimizer)
            progress.update(1)
            live = sum(c.record.status == "training" for c in training)
            if losses:
                progress.set_postfix(candidates=live, mean_loss=f"{sum(losses.values()) / len(losses):.4g}")
        progress.close()
        finished = [c for c in training if c.record.status == "training" and c.record.step >= self.config.steps]
        stopped = [c for c in training if c.record.status == "training" and c.record.step < self.config.steps]
        for candidate in stopped:
            self.store.save_checkpoint(candidate.record, candidate.module, candidate.optimizer)
        if finished:
            for candidate, value in zip(finished, self.evaluate(finished)):
                if candidate.record.status == "failed":
                    self.store.write_record(candidate.record)
                    continue
                candidate.record.rel_error, candidate.record.status = value, "done"
                self.store.save_weights(candidate.record, candidate.module)
        for candidate in candidates:
            candidate.module.zero_grad(set_to_none=True)  # the next group needs the memory
            if candidate.record.status == "failed":
                self.store.write_record(candidate.record)
        return PartitionResult([c.record for c in candidates], self.teacher_forwards, self.teacher_s,
                               time.perf_counter() - begin)


def _fail(candidate: Candidate, message: str) -> None:
    record = candidate.record
    record.status, record.error = "failed", message
    log.warning("candidate %s at %s failed: %s", record.label, record.unit, message)


__all__ = ["Candidate", "DistillWorker", "PartitionResult", "enumerate_candidates", "resolve"]
