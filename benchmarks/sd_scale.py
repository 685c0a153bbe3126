"""Scale benchmark: the embedded tiny-ldm and the SD-1.5-size sd15-16ch teacher at several latent sizes.

Usage::

    python benchmarks/sd_scale.py [--cells tiny-ldm:16,tiny-ldm:32,tiny-ldm:64,sd15-16ch:16,sd15-16ch:32]
                                  [--devices cpu[,cuda]] [--steps 2] [--archs 3] [--run-smoke | --smoke-log LOG]
                                  [--out benchmarks/results]

Each cell (teacher, latent side, device) runs in its own subprocess, so its peak memory is its own: the
process's peak RSS (``VmHWM``) and, on CUDA, ``torch.cuda.max_memory_allocated``. Per cell: the teacher's
forward time (batch 1, median of 3 after a warm-up; float32 on the CPU, bfloat16 autocast on CUDA), the
distillation throughput (candidate-steps/s: one teacher forward recording every unit, then one Adam step of each
trainable candidate, over ``--steps`` steps, teacher time included), and the distillation evaluator's archs/s
(random archs of the space, untrained surrogates, a 2-latent validation set). ``--run-smoke`` also runs the
CPU smoke configuration of ``experiments/sd15_16ch.yaml`` end to end in a subprocess and records its wall time
per stage and its peak RSS; ``--smoke-log`` instead takes those figures from the output of the slow test that
runs the same configuration (``python -m pytest -q -s -m slow tests/test_scale.py -k sd15_smoke > LOG``), so the
pipeline need not run twice. The load average (1/5/15 min) is recorded at the start and the end: on a shared
machine every time here is slower than alone. Writes ``sd_scale.json`` and ``sd_scale.md``; every figure names its
device.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    import tocsr_nas  # noqa: F401
except ImportError:  # run from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
SPACES = {"tiny-ldm": "tiny_ldm", "sd15-16ch": "sd15_nanosd"}
DEFAULT_CELLS = "tiny-ldm:16,tiny-ldm:32,tiny-ldm:64,sd15-16ch:16,sd15-16ch:32"
SMOKE = ["name=sd15_16ch_smoke", "device=cpu", "dtype=float32", "latent_size=16", "surrogates.steps=2",
         "surrogates.batch_size=1", "surrogates.held_out_samples=1", "surrogates.warmup_steps=0",
         "surrogates.max_memory_gb=12", "search.strategy=random", "search.budget=3", "search.validation.count=2",
         "search.validation.batch_size=1", "extract.eps=10"]
GIB = 1024 ** 3


def run_cell(teacher_name: str, latent: int, device_name: str, steps: int, archs: int) -> dict[str, Any]:
    """Measure one cell in this process (called in a subprocess by :func:`main`)."""
    import numpy as np
    import torch

    from evaluators.distillation import DistillationEvaluator, ValidationSet
    from tocsr_nas.device import autocast, resolve_device
    from tocsr_nas.distill import DistillConfig
    from tocsr_nas.distill.trainer import DistillWorker
    from tocsr_nas.teachers import load_teacher

    torch.set_num_threads(os.cpu_count() or 1)
    device = resolve_device(device_name)
    dtype_name = "bfloat16" if device.type == "cuda" else "float32"
    space = SPACES[teacher_name]
    config = DistillConfig.model_validate({"space": space, "steps": steps, "batch_size": 1, "held_out_samples": 1,
                                           "latent_size": latent, "latents": {"source": "gaussian"},
                                           "device": device_name, "dtype": dtype_name, "seed": 0})
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        teacher = load_teacher(config.teacher or worker_space(space), seed=0)  # kept whole: timed and used below
        worker = DistillWorker(config, out, teacher=teacher, num_threads=torch.get_num_threads())
        build_s = time.perf_counter() - begin
        teacher, dtype = worker.teacher, worker.dtype

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        inputs = {k: v.to(device) for k, v in worker.train_calls.batch(0, 1).items()}
        times = []
        with torch.no_grad(), autocast(device, dtype):
            for _ in range(4):
                sync()
                tick = time.perf_counter()
                teacher.unet(**inputs)
                sync()
                times.append(time.perf_counter() - tick)
        forward_s = statistics.median(times[1:])
        worker._select(None)
        candidates = [c for c in worker._prepare() if c.record.status == "training"]
        tick = time.perf_counter()
        for step in range(steps):
            calls = worker.unit_calls(worker.train_calls, step)
            for candidate in candidates:
                worker.train_step(candidate, calls[candidate.unit.path], 1e-3)
        sync()
        distill_s = time.perf_counter() - tick
        del candidates, calls
        for module in worker.supernet.modules():
            module.zero_grad(set_to_none=True)
        latents = torch.randn(2, teacher.latent_channels, latent, latent, generator=torch.Generator().manual_seed(0))
        validation = ValidationSet.build(teacher, latents, batch_size=2, device=device, dtype=dtype)
        evaluator = DistillationEvaluator(worker.supernet, validation)
        rng = np.random.default_rng(0)
        chosen = [worker.space.sample(rng) for _ in range(archs + 1)]
        evaluator.evaluate(chosen[0])  # warm-up
        tick = time.perf_counter()
        for arch in chosen[1:]:
            evaluator.evaluate(arch)
        sync()
        eval_s = time.perf_counter() - tick
        trainable = sum(r.op != "teacher" for r in worker.all_records)
    result = {"teacher": teacher_name, "space": space, "latent": latent, "device": str(device), "dtype": dtype_name,
              "threads": torch.get_num_threads(), "build_s": build_s, "teacher_forward_s": forward_s,
              "trainable_candidates": trainable, "distill_steps": steps,
              "candidate_steps_per_s": trainable * steps / distill_s, "evaluator_archs": archs,
              "archs_per_s": archs / eval_s, "peak_rss_gib": _status_kib("VmHWM") / 1024 ** 2}
    if device.type == "cuda":
        result["peak_cuda_gib"] = torch.cuda.max_memory_allocated(device) / GIB
    return result


def worker_space(space: str) -> str:
    """The teacher a space names."""
    import search_spaces

    return search_spaces.load(space).teacher


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as stream:
        for line in stream:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_smoke(runs: Path) -> dict[str, Any]:
    """The CPU smoke configuration of experiments/sd15_16ch.yaml, end to end, in a subprocess."""
    command = [sys.executable, "-m", "tocsr_nas", "run", str(ROOT / "experiments" / "sd15_16ch.yaml"), *SMOKE,
               "--runs-dir", str(runs)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    tick = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - tick
    if done.returncode != 0:
        raise RuntimeError(f"smoke run failed: {done.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads((runs / "sd15_16ch_smoke" / "run_summary.json").read_text())
    winner = json.loads((runs / "sd15_16ch_smoke" / "extract" / "winner.json").read_text())
    return {"command": "tocsr-nas run experiments/sd15_16ch.yaml " + " ".join(SMOKE), "device": "cpu",
            "wall_s": wall, "stages_s": {k: v["seconds"] for k, v in summary.items()},
            "peak_rss_gib": peak / 1024 ** 2 if peak > before else None, "winner": winner}


SMOKE_TEST = "python -m pytest -q -s -m slow tests/test_scale.py -k sd15_smoke"
_STAGES = re.compile(r"sd15 smoke: peak RSS ([0-9.]+) GiB; (.*)")
_COMPACT = re.compile(r"compact UNet: ([0-9.]+)M params, ([0-9.]+) GMACs at a (\d+)x\d+ latent vs the teacher's "
                      r"([0-9.]+)M / ([0-9.]+) G")


def read_smoke_log(path: Path) -> dict[str, Any]:
    """The smoke figures the slow test printed (its peak RSS and stage times, ``extract``'s compact-UNet line)."""
    text = path.read_text()
    stages, compact = _STAGES.search(text), _COMPACT.search(text)
    if stages is None or compact is None or " passed" not in text:
        raise SystemExit(f"{path}: not the output of a passing `{SMOKE_TEST}`")
    seconds = {name: float(value.removesuffix(" s")) for name, value in
               (item.strip().split(" ", 1) for item in stages.group(2).split(","))}
    params, gmacs, latent, teacher_params, teacher_gmacs = (float(g) for g in compact.groups())
    return {"command": SMOKE_TEST, "device": "cpu", "wall_s": sum(seconds.values()), "stages_s": seconds,
            "peak_rss_gib": float(stages.group(1)),
            "winner": {"params_m": params, "gmacs": gmacs, "latent": int(latent), "teacher_params_m": teacher_params,
                       "teacher_gmacs": teacher_gmacs, "params_ratio": teacher_params / params,
                       "macs_ratio": teacher_gmacs / gmacs}}


def markdown(data: dict[str, Any]) -> str:
    lines = [("Every figure was measured on the device named in its row (no GPU was present unless a row says "
              "cuda). CPU rows run the teacher in float32, CUDA rows under bfloat16 autocast; candidates always "
              "train in float32. Batch 1; gaussian latents; untrained (seeded) teacher weights for sd15-16ch."), "",
             ("| teacher | latent | device | dtype | teacher forward (s) | candidate-steps/s | trainable candidates "
              "| evaluator archs/s | peak RSS (GiB) | peak CUDA (GiB) | build (s) |"),
             "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for cell in data["cells"]:
        if "error" in cell:
            lines.append(f"| {cell['teacher']} | {cell['latent']} | {cell['device']} | | failed: {cell['error']} "
                         f"| | | | | | |")
            continue
        cuda = f"{cell['peak_cuda_gib']:.2f}" if "peak_cuda_gib" in cell else "-"
        lines.append(f"| {cell['teacher']} | {cell['latent']} | {cell['device']} | {cell['dtype']} | "
                     f"{cell['teacher_forward_s']:.3f} | {cell['candidate_steps_per_s']:.1f} | "
                     f"{cell['trainable_candidates']} | {cell['archs_per_s']:.2f} | {cell['peak_rss_gib']:.2f} | "
                     f"{cuda} | {cell['build_s']:.0f} |")
    smoke = data.get("smoke")
    if smoke:
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in smoke["stages_s"].items())
        rss = "n/a" if smoke["peak_rss_gib"] is None else f"{smoke['peak_rss_gib']:.2f} GiB"
        lines += ["", f"Smoke pipeline (device cpu): `{smoke['command']}`", "",
                  (f"Wall time {smoke['wall_s']:.0f} s ({stages}); peak RSS {rss}; extracted compact UNet "
                   f"{smoke['winner'].get('params_m', float('nan')):.1f}M params, "
                   f"{smoke['winner'].get('gmacs', float('nan')):.1f} GMACs at the 64x64 latent "
                   f"({smoke['winner'].get('params_ratio', float('nan')):.2f}x / "
                   f"{smoke['winner'].get('macs_ratio', float('nan')):.2f}x smaller than the teacher).")]
    if data.get("not_measured"):
        lines += ["", "Not measured (the run was stopped before them): " + ", ".join(data["not_measured"]) + "."]
    load = data.get("load_average")
    if load:
        lines += ["", "Load average (1/5/15 min): " + "; ".join(
            f"{when} {' / '.join(f'{x:.1f}' for x in values)}" for when, values in load.items())
            + f" on {data['machine']['cpu_count']} CPUs (a shared machine: times are slower than alone)."]
    lines += ["", f"Command: `{data['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", default=DEFAULT_CELLS, help="teacher:latent pairs, comma-separated")
    parser.add_argument("--devices", default=None, help="comma-separated (default: cpu, and cuda when present)")
    parser.add_argument("--steps", type=int, default=2, help="distillation steps per cell")
    parser.add_argument("--archs", type=int, default=3, help="evaluated archs per cell")
    smoke = parser.add_mutually_exclusive_group()
    smoke.add_argument("--run-smoke", action="store_true", help="also run the sd15_16ch CPU smoke pipeline")
    smoke.add_argument("--smoke-log", type=Path, help=f"take the smoke figures from the output of `{SMOKE_TEST}`")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: teacher:latent:device, prints JSON
    args = parser.parse_args(argv)
    if args.cell:
        teacher, latent, device = args.cell.split(":", 2)
        print(json.dumps(run_cell(teacher, int(latent), device, args.steps, args.archs)))
        return 0
    import torch
    from _common import machine, write_results

    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    smoke_figures = read_smoke_log(args.smoke_log) if args.smoke_log else None  # a bad log: refused first
    data: dict[str, Any] = {"command": "python benchmarks/sd_scale.py " + " ".join(argv or sys.argv[1:]),
                            "machine": machine(), "cells": [],
                            "not_measured": [f"{item}:{device}" for device in devices for item in args.cells.split(",")],
                            "load_average": {"start": os.getloadavg()}}
    if smoke_figures is not None:
        data["smoke"] = smoke_figures
    for device in devices:
        for item in args.cells.split(","):
            teacher, latent = item.split(":")
            command = [sys.executable, __file__, "--cell", f"{teacher}:{latent}:{device}", "--steps", str(args.steps),
                       "--archs", str(args.archs)]
            print("running", " ".join(command[2:]), flush=True)
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                error = (done.stderr.strip().splitlines() or [f"exit status {done.returncode} (negative: killed by "
                                                              f"that signal, e.g. 9 by the kernel's OOM killer)"])[-1][:200]
                data["cells"].append({"teacher": teacher, "latent": int(latent), "device": device, "error": error})
            else:
                data["cells"].append(json.loads(done.stdout.strip().splitlines()[-1]))
            data["not_measured"].remove(f"{item}:{device}")
            print(json.dumps(data["cells"][-1]), flush=True)
            data["load_average"]["end"] = os.getloadavg()
            write_results("sd_scale", data, markdown(data), args.out)  # after every cell: a stopped run keeps them
    if args.run_smoke:
        with tempfile.TemporaryDirectory() as runs:
            data["smoke"] = run_smoke(Path(runs))
        print(json.dumps(data["smoke"]), flush=True)
    data["load_average"]["end"] = os.getloadavg()
    json_path, md_path = write_results("sd_scale", data, markdown(data), args.out)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
