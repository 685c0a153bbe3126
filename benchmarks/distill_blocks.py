"""Distillation benchmark: every candidate of ``tiny_ldm`` trained locally and on 2 Ray workers, side by side.

Usage::

    python benchmarks/distill_blocks.py [--config experiments/recipes/distill_blocks.yaml] [--runs runs/bench-distill]
                                        [--out benchmarks/results] [--skip-ray]

Runs the recipe twice into fresh folders under ``--runs``: the local executor (one process), then the Ray
executor with 2 workers (a private local instance; each worker holds its own teacher copy). Writes
``distill_blocks.json`` (timings, teacher throughput, per-candidate relative errors of both runs, machine) and
``distill_blocks.md`` (summary and the per-candidate table) to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

try:
    import tocsr_nas  # noqa: F401
except ImportError:  # run from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tocsr_nas.config_io import read_mapping, validate
from tocsr_nas.distill import DistillConfig, DistillReport, distill_blocks
from tocsr_nas.distill.trainer import resolve
from tocsr_nas.teachers.weights import weights_folder

ROOT = Path(__file__).resolve().parents[1]
NOTE = ('Notes: Ray runs its workers at niceness 15, and each Ray worker runs its own full teacher forward per '
        'step (forwards/s is per worker, teacher time only). With one thread per worker the local and Ray runs '
        'are bit-identical; the stated tolerance (tests) is 1e-3 relative. Load average (1 min) before the runs: '
        '{load:.2f} on {cpus} CPUs.')


def teacher_weights_sha(weights: Path | None) -> str | None:
    """The manifest hash of the teacher UNet the run used (which shipped weights those were)."""
    if weights is None:
        return None
    return json.loads((weights / "manifest.json").read_text())["files"]["unet.safetensors"]


def run(config: DistillConfig, folder: Path) -> DistillReport:
    """A fresh run of ``config`` into ``folder``."""
    shutil.rmtree(folder, ignore_errors=True)
    return distill_blocks(config, folder)


def summarise(report: DistillReport) -> dict[str, Any]:
    """Timing, throughput and the distribution of error ratios of one run."""
    trained = [r for r in report.records if r.status == "done"]
    ratios = [r.rel_error / r.rel_error_init for r in trained if r.rel_error_init]
    return {**report.to_json(), "candidates": len(report.records), "trained": len(trained),
            "ratio_median": statistics.median(ratios) if ratios else None, "ratio_max": max(ratios, default=None),
            "rel_error_max": max((r.rel_error for r in trained), default=None),
            "teacher_rel_error_max": max((r.rel_error for r in report.records if r.status == "teacher"), default=None)}


def per_op(report: DistillReport) -> dict[str, dict[str, float]]:
    """Median relative error before and after training, per candidate label."""
    groups: dict[str, list] = {}
    for record in report.records:
        groups.setdefault(record.label, []).append(record)
    return {label: {"n": len(rs), "init_median": statistics.median(r.rel_error_init for r in rs),
                    "final_median": statistics.median(r.rel_error for r in rs)} for label, rs in groups.items()}


def markdown(result: dict[str, Any], local: DistillReport, ray: DistillReport | None) -> str:
    config = result["config"]
    lines = ["# Distillation of the tiny_ldm surrogate blocks", "",
             f"Measured {result['date']} on {result['machine']['cpu_count']} CPU cores ({result['machine']['platform']}),"
             f" torch {result['machine']['torch']}. Teacher weights: "
             f"{result['teacher_weights']}; latents: {result['latents']}.",
             f"Recipe: {config['steps']} steps x batch {config['batch_size']}, lr {config['lr']}, loss {config['loss']},"
             f" mode {config['mode']}, {config['held_out_samples']} held-out samples, {config['num_threads']} thread(s)"
             " per worker.", "",
             "| run | wall (s) | teacher forwards | forwards/s (per worker) | trained | median final/init | worst final/init |"
             " worst final rel. error | failed |", "|---|---|---|---|---|---|---|---|---|"]
    for name, summary in result["runs"].items():
        lines.append(f"| {name} | {summary['wall_s']:.0f} | {summary['teacher_forwards']} | "
                     f"{summary['teacher_forwards_per_s']:.2f} | {summary['trained']}/{summary['candidates']} | "
                     f"{summary['ratio_median']:.3f} | {summary['ratio_max']:.3f} | {summary['rel_error_max']:.4f} | "
                     f"{summary['counts'].get('failed', 0)} |")
    if "agreement" in result:
        agreement = result["agreement"]
        lines += ["", f"Local vs Ray, same seed: largest relative difference of a candidate's final held-out error "
                      f"{agreement['max_rel_diff']:.2e} (median {agreement['median_rel_diff']:.2e})."]
    lines += ["", NOTE.format(load=result["load_average"], cpus=os.cpu_count())]
    lines += ["", "Teacher (`T`) candidates have zero error by construction (max measured: "
              f"{result['runs']['local']['teacher_rel_error_max']}). `I` without trainable parameters is `fixed`.",
              "", "## Median held-out relative error per candidate (local run)", "",
              "| candidate | units | at init | after training |", "|---|---|---|---|"]
    for label, row in result["per_op"].items():
        lines.append(f"| {label} | {row['n']} | {row['init_median']:.4f} | {row['final_median']:.4f} |")
    lines += ["", "## Every candidate", "", "| unit | candidate | status | init | local | ray |", "|---|---|---|---|---|---|"]
    ray_errors = {r.key: r.rel_error for r in ray.records} if ray is not None else {}
    for record in local.records:
        ray_value = ray_errors.get(record.key)
        lines.append(f"| {record.unit} | {record.label} | {record.status} | {record.rel_error_init:.4f} | "
                     f"{record.rel_error:.4f} | {'' if ray_value is None else f'{ray_value:.4f}'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "experiments/recipes/distill_blocks.yaml")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs/bench-distill")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = validate(DistillConfig, read_mapping(args.config), source=args.config)
    teacher, _, _ = resolve(config)
    weights = weights_folder(config.teacher or "tiny-ldm") if teacher.vae is not None else None
    latents = config.latents.source
    if latents == "auto":
        latents = "VAE latents of scikit-image crops" if teacher.vae is not None else "gaussian (teacher has no VAE)"
    load_average = os.getloadavg()[0]
    local = run(config, args.runs / "local")
    runs = {"local": summarise(local)}
    ray = None
    if not args.skip_ray:
        ray_config = config.model_copy(update={"executor": config.executor.model_copy(update={"kind": "ray",
                                                                                            "num_workers": 2})})
        ray = run(ray_config, args.runs / "ray")
        runs["ray x2"] = summarise(ray)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__},
        "config": config.model_dump(), "teacher_weights": str(weights.resolve()) if weights else "random init",
        "latents": latents, "load_average": load_average,
        "teacher_weights_sha256": teacher_weights_sha(weights),
        "runs": runs, "per_op": per_op(local),
        "candidates": {"local": [r.to_json() for r in local.records]},
    }
    if ray is not None:
        result["candidates"]["ray"] = [r.to_json() for r in ray.records]
        diffs = [abs(a.rel_error - b.rel_error) / max(abs(a.rel_error), 1e-12)
                 for a, b in zip(local.records, ray.records) if a.status == b.status == "done"]
        result["agreement"] = {"max_rel_diff": max(diffs, default=0.0), "median_rel_diff": statistics.median(diffs or [0.0])}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distill_blocks.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (args.out / "distill_blocks.md").write_text(markdown(result, local, ray))
    print(json.dumps(runs, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
