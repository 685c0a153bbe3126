"""SR evaluation by the standard protocol, with reference rows, tables and latency.

For each HR image: crop to a multiple of ``scale``, make the LR by MATLAB bicubic downscaling (8-bit) or by another
degradation (e.g. Real-ESRGAN's, seeded per image by :func:`lr_generator`, so a degraded set is fixed by its config and
seed), super-resolve, and measure PSNR/SSIM on Y with ``scale`` pixels shaved (:mod:`.metrics`). Reference rows: ``bicubic`` (the LR
upsampled back) and ``vae-recon`` (the HR image encoded and decoded by the model's VAE: the ceiling any latent
model with that VAE can reach). Unreadable files and images too small for the scale are skipped with a warning.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL

from ..data.images import load_image
from ..degradations import BicubicDegradation, Degradation, degradation_config, make_degradation
from ..errors import ConfigError
from ..training.evaluate import reconstruct
from .metrics import crop_to_scale, psnr_y, ssim_y
from .model import SRModel
from .pipeline import predict_latent, upsample_lr, upscale_image

log = logging.getLogger(__name__)

Method = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (lr, hr) -> sr
Metric = Callable[[torch.Tensor, torch.Tensor], float]  # (sr, hr) -> value
OutputsHook = Callable[[Path, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]], None]  # (path, lr, hr, outputs)


def min_hr_side(scale: int) -> int:
    """The smallest HR side measurable at ``scale``: ``scale`` shaved at both ends plus one 11-px SSIM window."""
    return 2 * scale + 11


def lr_generator(seed: int, name: str) -> torch.Generator:
    """The generator degrading one evaluation image: a function of ``(seed, file name)`` alone (not of the order)."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def eval_degradation(spec: str | Path, scale: int) -> tuple[Degradation, dict[str, Any]]:
    """The degradation making an evaluation's LR inputs and its resolved config (for the report).

    ``spec`` is a registered name (its defaults at ``scale``) or a YAML/JSON config file, whose ``scale`` must be
    ``scale``. Unknown names, bad files and a scale mismatch are a ``ConfigError``.
    """
    named = isinstance(spec, str) and not spec.endswith((".yaml", ".yml", ".json"))
    config = degradation_config(spec, scale=scale if named else None)
    _require_scale(config.scale, scale, source=spec, key="scale")
    return make_degradation(config), config.model_dump(mode="json")


def _require_scale(degradation_scale: int, scale: int, *, source: str | Path | None = None, key: str) -> None:
    """Refuse a degradation whose scale is not the evaluation's."""
    if degradation_scale != scale:
        raise ConfigError(f"degradation has scale {degradation_scale}, the evaluation {scale}", source=source,
                          key=key, allowed=[scale])


def reference_methods(scale: int, vae: AutoencoderKL | None) -> dict[str, Method]:
    """The ``bicubic`` row and, given a VAE, the ``vae-recon`` row."""
    methods: dict[str, Method] = {"bicubic": lambda lr, hr: upsample_lr(lr, scale)}
    if vae is not None:
        methods["vae-recon"] = lambda lr, hr: reconstruct(vae, hr).clamp(0, 1)
    return methods


def model_method(model: SRModel, *, steps: int = 50, tile: int = 512, overlap: int = 64, seed: int = 0,
                 fix: str = "none", output: str | None = None, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, light: bool = False) -> Method:
    """An SR model as an evaluation method (``output`` overrides the model's output mode; ``light``: its light VAE)."""
    return lambda lr, hr: upscale_image(model, lr, steps=steps, tile=tile, overlap=overlap, seed=seed, fix=fix,
                                        output=output, device=device, dtype=dtype, light=light)


def evaluate_files(methods: Mapping[str, Method], files: Sequence[Path], scale: int, *, dataset: str = "",
                   extra_metrics: Mapping[str, Metric] | None = None, max_side: int | None = None,
                   on_outputs: OutputsHook | None = None, degradation: Degradation | None = None,
                   degradation_seed: int = 0) -> list[dict[str, Any]]:
    """Per-image rows ``{dataset, image, method, psnr_y, ssim_y, seconds, ...}`` for every method.

    ``degradation`` (default: MATLAB bicubic at ``scale``) makes each LR from its cropped HR image with the generator
    ``lr_generator(degradation_seed, file name)``, so the same seed gives the same LR inputs bit for bit.
    ``max_side`` center-crops larger ground truths (for quick runs; the standard protocol uses whole images).
    ``on_outputs(path, lr, hr, {method: sr})`` is called once per evaluated image (e.g. to write comparison crops).
    """
    degrade = degradation if degradation is not None else BicubicDegradation(scale)
    _require_scale(degrade.scale, scale, key="degradation")
    rows = []
    for path in files:
        try:
            hr = load_image(path)
            if max_side is not None:
                top, left = max(0, (hr.shape[-2] - max_side) // 2), max(0, (hr.shape[-1] - max_side) // 2)
                hr = hr[..., top:top + max_side, left:left + max_side]
            hr = crop_to_scale(hr, scale)
        except ConfigError as err:
            log.warning("skipping %s: %s", path, err)
            continue
        if min(hr.shape[-2:]) < min_hr_side(scale):
            log.warning("skipping %s: image %dx%d is smaller than %d px, the least scale %d allows (shave + SSIM "
                        "window)", path, hr.shape[-1], hr.shape[-2], min_hr_side(scale), scale)
            continue
        lr = degrade(hr, lr_generator(degradation_seed, path.name))
        outputs = {}
        for name, method in methods.items():
            start = time.perf_counter()
            sr = outputs[name] = method(lr, hr)
            seconds = time.perf_counter() - start
            row = {"dataset": dataset, "image": path.name, "method": name, "psnr_y": psnr_y(sr, hr, scale),
                   "ssim_y": ssim_y(sr, hr, scale), "seconds": seconds}
            for metric_name, metric in (extra_metrics or {}).items():
                row[metric_name] = metric(sr, hr)
            rows.append(row)
            log.info("%s %s %s: %.3f dB", dataset, path.name, name, row["psnr_y"])
        if on_outputs is not None:
            on_outputs(path, lr, hr, outputs)
    return rows


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean of every numeric column per ``(dataset, method)``, in first-seen order."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["method"]), []).append(row)
    summary = []
    for (dataset, method), members in groups.items():
        entry: dict[str, Any] = {"dataset": dataset, "method": method, "images": len(members)}
        for key in members[0]:
            if key not in {"dataset", "image", "method"}:
                entry[key] = statistics.fmean(float(m[key]) for m in members)
        summary.append(entry)
    return summary


def _median_seconds(call: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``call()`` over ``repeats`` runs, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def measure_latency(model: SRModel, lr_size: int, *, steps: int = 50, repeats: int = 3, seed: int = 0,
                    light: bool = False, tile: int | None = None, warmup: int = 1) -> float:
    """Median seconds to upscale one seeded ``lr_size x lr_size`` image (after ``warmup`` untimed calls).

    ``tile``: output-pixel tile side (default: untiled); ``light``: encode and decode with the model's light VAE.
    """
    lr = torch.rand(3, lr_size, lr_size, generator=torch.Generator().manual_seed(seed))
    tile = tile or lr_size * model.scale + model.vae_factor * model.unet_factor
    return _median_seconds(lambda: upscale_image(model, lr, steps=steps, tile=tile, light=light), repeats, warmup)


@torch.no_grad()
def measure_latent_latency(model: SRModel, lr_size: int, *, steps: int = 50, repeats: int = 3, seed: int = 0,
                           warmup: int = 1) -> float:
    """Median seconds of the latent-space part alone (the UNet calls, no VAE) for an ``lr_size`` LR image."""
    side = lr_size * model.scale // model.vae_factor
    generator = torch.Generator().manual_seed(seed)
    lr_latent = torch.randn(1, model.net.latent_channels, side, side, generator=generator)
    noise = torch.randn(lr_latent.shape, generator=generator)
    return _median_seconds(lambda: predict_latent(model, lr_latent, steps=steps, noise=noise), repeats, warmup)


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows to CSV (columns from the first row, then any new keys)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A GitHub-flavoured Markdown table of ``rows``."""
    if not rows:
        return "(no rows)\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


__all__ = ["eval_degradation", "evaluate_files", "lr_generator", "markdown_table", "measure_latency", "measure_latent_latency", "min_hr_side", "model_method", "reference_methods", "summarize",
           "write_csv"]
