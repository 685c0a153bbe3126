"""The training loop shared by every recipe: accelerate, tqdm progress, EMA, checkpoints, resume.

A recipe supplies a :class:`Task` (its trainable modules and a loss) and a dataset of crops. Batch ``s``
is items ``s*B .. s*B+B-1`` of the dataset and the step's noise generator is seeded from ``(seed, s)``,
so a run resumed from a checkpoint continues exactly as if it had never stopped.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from ..atomic import write_text
from ..device import autocast, resolve_device, resolve_dtype
from .checkpoint import Checkpoint, latest_checkpoint, save_checkpoint
from .config import LoopConfig

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"


class Task(Protocol):
    """What a recipe trains: ``model`` holds every trainable module; ``loss`` scores one batch.

    ``frozen`` lists the modules the loss uses without training them (a VAE, a teacher): the loop moves
    them to the training device with the model, and everything back to the CPU when it returns.
    """

    model: nn.Module
    frozen: tuple[nn.Module, ...]

    def loss(self, model: nn.Module, batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to minimise and named float metrics for the log."""
        ...


@dataclass
class TrainResult:
    """How a run ended: the step reached, the trained (EMA if enabled) weights, logged metric means."""

    step: int
    model: nn.Module
    resumed_from: int
    wall_s: float
    history: list[dict[str, float]] = field(default_factory=list)


def learning_rate(config: LoopConfig, step: int) -> float:
    """Linear warmup, then cosine decay from ``lr`` to ``lr * min_lr_ratio`` over the remaining steps."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(task: Task, dataset: torch.utils.data.Dataset, config: LoopConfig, out_dir: str | Path,
          *, resume: bool = True, stop_after: int | None = None) -> TrainResult:
    """Train ``task.model`` on ``dataset`` for ``config.steps`` steps, checkpointing under ``out_dir``.

    Runs on ``config.device`` (``auto``: the GPU when there is one; TF32 matmuls allowed there); the loss (model
    and frozen networks) runs under autocast in ``config.dtype`` while the trained weights and the optimizer stay
    float32 (float16 scales the loss against underflow). The returned model is on the CPU.

    Args:
        task: the recipe's model and loss.
        dataset: indexable crops; must hold at least ``steps * batch_size`` items.
        config: optimisation settings.
        out_dir: run folder (``checkpoints/`` and ``metrics.jsonl`` go here).
        resume: continue from the newest valid checkpoint in ``out_dir`` if there is one.
        stop_after: stop (after checkpointing) once this step is reached; simulates a kill in tests.
    """
    device = resolve_device(config.device)  # before anything is written
    dtype = resolve_dtype(config.dtype, device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.num_threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # accelerate trains on the current CUDA device
    accelerator = Accelerator(cpu=device.type == "cpu")
    if accelerator.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    model = task.model
    ema = copy.deepcopy(model).requires_grad_(False) if config.ema_decay else None
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    start, history = 0, []
    checkpoint = latest_checkpoint(out_dir / CHECKPOINT_DIR) if resume else None
    if checkpoint is not None:
        model.load_state_dict(checkpoint.model)
        optimizer.load_state_dict(checkpoint.optimizer)
        if ema is not None and checkpoint.ema is not None:
            ema.load_state_dict(checkpoint.ema)
        start, history = checkpoint.step, list(checkpoint.extra.get("history", []))
        log.info("resuming from step %d", start)
    if (out_dir / METRICS_FILE).exists():  # rows a killed run logged after its last checkpoint would repeat
        write_text(out_dir / METRICS_FILE, "".join(json.dumps(entry) + "\n" for entry in history))
    model, optimizer = accelerator.prepare(model, optimizer)
    for module in (ema, *task.frozen):
        if module is not None:
            module.to(accelerator.device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    begin, sums, count = time.perf_counter(), {}, 0
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    progress = tqdm(total=config.steps, initial=start, desc="train", unit="step", disable=None)
    model.train()
    for step in range(start, end):
        batch = torch.stack([dataset[step * config.batch_size + i] for i in range(config.batch_size)])
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        with autocast(device, dtype):
            loss, metrics = task.loss(model, batch.to(accelerator.device), generator)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(scaler.scale(loss))
        if config.grad_clip is not None:
            scaler.unscale_(optimizer)
            accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if ema is not None:
            _update_ema(ema, accelerator.unwrap_model(model), min(config.ema_decay, (1 + step) / (10 + step)))
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + value
        count += 1
        progress.update(1)
        done = step + 1
        if done % config.log_every == 0 or done == end:
            entry = {"step": done, "lr": learning_rate(config, step), **{k: v / count for k, v in sums.items()}}
            history.append(entry)
            _append_jsonl(out_dir / METRICS_FILE, entry)
            progress.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k not in {"step", "lr"}})
            log.info("step %d: %s", done, ", ".join(f"{k}={v:.5g}" for k, v in entry.items() if k != "step"))
            sums, count = {}, 0
        if done % config.checkpoint_every == 0 or done == end:
            unwrapped = accelerator.unwrap_model(model)
            save_checkpoint(out_dir / CHECKPOINT_DIR, Checkpoint(
                step=done, model=unwrapped.state_dict(), optimizer=optimizer.state_dict(),
                ema=ema.state_dict() if ema is not None else None, extra={"history": history}),
                keep=config.keep_checkpoints)
    progress.close()
    final = ema if ema is not None else accelerator.unwrap_model(model)
    for module in task.frozen:
        module.to("cpu")
    return TrainResult(step=max(start, end), model=final.to("cpu").eval(), resumed_from=start,
                       wall_s=time.perf_counter() - begin, history=history)


@torch.no_grad()
def _update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1 - decay)


def _append_jsonl(path: Path, entry: dict[str, float]) -> None:
    with path.open("a") as stream:
        stream.write(json.dumps(entry) + "\n")
