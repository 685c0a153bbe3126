"""Scale benchmark: the embedded tiny-ldm and the SD-1.5-size sd15-16ch teacher at several latent sizes.

Usage::

    python benchmarks/sd_scale.py [--cells tiny-ldm:16,tiny-ldm:32,tiny-ldm:64,sd15-16ch:16,sd15-16ch:32 | none]
                                  [--devices cpu[,cuda]] [--steps 2] [--archs 3] [--max-memory-gb 12]
                                  [--run-smoke] [--out benchmarks/results]

Each cell (teacher, latent side, device) runs in its own subprocess on one thread, so its peak memory is its own:
the process's peak RSS (``VmHWM``) and, on CUDA, ``torch.cuda.max_memory_allocated``. Per cell: the teacher's
forward time (batch 1, median of 3 after a warm-up; float32 on the CPU, bfloat16 autocast on CUDA); the
distillation plan ``distill-blocks`` would make under ``--max-memory-gb`` (unit groups, probed one-step memory
estimate); the distillation throughput of the plan's biggest group (candidate-steps/s: per step one teacher
forward recording the group's units, then one Adam step of each of its trainable candidates, over ``--steps``
steps, teacher time included); and the distillation evaluator's archs/s (random archs of the space, untrained
surrogates, a 2-latent validation set). A failed cell records its real error (the traceback's last line, or the
signal that killed it).

``--run-smoke`` runs ``experiments/sd15_16ch_smoke.yaml`` (the CPU smoke configuration of
``experiments/sd15_16ch.yaml``) end to end on one thread, then ``tocsr-nas extract`` on its search: wall time per
stage, peak RSS, and the compact UNet's params/GMACs as ``extract`` prints them. The slow test
``tests/test_scale.py::test_sd15_smoke_pipeline`` calls the same :func:`run_smoke`. The sections are kept
separately: ``--cells none --run-smoke`` redoes only the smoke figures and keeps the cells already in ``--out``,
a run without ``--run-smoke`` keeps the smoke figures; each section names the command and date that measured it.
The load average (1/5/15 min) is recorded at the start and the end of each: on a shared machine every time here
is slower than alone. Writes ``sd_scale.json`` and ``sd_scale.md``; every figure names its device.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
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
GIB = 1024 ** 3
MAX_MEMORY_GB = 12.0  # the cells' distillation budget (the smoke run uses its YAML's)


def run_cell(teacher_name: str, latent: int, device_name: str, steps: int, archs: int,
             max_memory_gb: float) -> dict[str, Any]:
    """Measure one cell in this process (called in a subprocess by :func:`main`).

    Distillation is planned as ``distill-blocks`` plans it (:func:`~tocsr_nas.distill.plan.worker_plan`: one
    probed step per unit, units packed into groups under ``max_memory_gb``); the plan's biggest group then takes
    ``steps`` steps (one teacher forward recording its units, one Adam step of each of its trainable candidates).
    """
    import dataclasses

    import numpy as np
    import torch

    from evaluators.distillation import DistillationEvaluator, ValidationSet
    from tocsr_nas.device import autocast, resolve_device
    from tocsr_nas.distill import DistillConfig
    from tocsr_nas.distill.plan import worker_plan
    from tocsr_nas.distill.trainer import DistillWorker

    device = resolve_device(device_name)
    dtype_name = "bfloat16" if device.type == "cuda" else "float32"
    space = SPACES[teacher_name]
    config = DistillConfig.model_validate({"space": space, "steps": steps, "batch_size": 1, "held_out_samples": 1,
                                           "latent_size": latent, "latents": {"source": "gaussian"},
                                           "device": device_name, "dtype": dtype_name, "seed": 0,
                                           "max_memory_gb": max_memory_gb})
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        worker = DistillWorker(config, out, num_threads=1)  # loads the teacher; the supernet runs its forwards
        build_s = time.perf_counter() - begin
        dtype = worker.dtype

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        inputs = {k: v.to(device) for k, v in worker.train_calls.batch(0, 1).items()}
        times = []
        with torch.no_grad(), autocast(device, dtype):
            for _ in range(4):
                sync()
                tick = time.perf_counter()
                worker.unet(**inputs)
                sync()
                times.append(time.perf_counter() - tick)
        forward_s = statistics.median(times[1:])
        plan = worker_plan(config, worker)
        index, group = max(enumerate(plan.groups), key=lambda item: item[1].estimate_bytes)
        worker._select(group.keys)
        candidates = [c for c in worker._prepare() if c.record.status == "training"]
        trainable = len(candidates)
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
        worker.supernet.activate(worker.space.teacher_arch())
        teacher = dataclasses.replace(worker.teacher, unet=worker.unet)  # the supernet on the teacher's path
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
    result = {"teacher": teacher_name, "space": space, "latent": latent, "device": str(device), "dtype": dtype_name,
              "threads": torch.get_num_threads(), "build_s": build_s, "teacher_forward_s": forward_s,
              "groups": len(plan.groups), "plan_budget_gib": max_memory_gb,
              "plan_estimate_gib": group.estimate_bytes / GIB,
              "measured_group": {"index": index, "units": len(group.units), "candidates": len(group.keys)},
              "plan_candidates": sum(len(g.keys) for g in plan.groups),
              "trainable_candidates": trainable, "distill_steps": steps,
              "candidate_steps_per_s": trainable * steps / distill_s, "evaluator_archs": archs,
              "archs_per_s": archs / eval_s, "peak_rss_gib": _status_kib("VmHWM") / 1024 ** 2}
    if device.type == "cuda":
        result["peak_cuda_gib"] = torch.cuda.max_memory_allocated(device) / GIB
    return result


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as stream:
        for line in stream:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


SMOKE_YAML = ROOT / "experiments" / "sd15_16ch_smoke.yaml"
_COMPACT = re.compile(r"compact UNet: ([0-9.]+)M params, ([0-9.]+) GMACs at a (\d+)x\d+ latent vs the teacher's "
                      r"([0-9.]+)M / ([0-9.]+) G")


def _child(command: list[str], logs: Path) -> tuple[str, float, float]:
    """Run ``command`` on one thread; its stdout, wall seconds and peak RSS in GiB (its own, from ``wait4``)."""
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        tick = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - tick
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = (logs / "stderr").read_text().strip().splitlines()[-15:]
        raise RuntimeError(f"{' '.join(command[2:])} failed (exit status {process.returncode}): " + "\n".join(tail))
    return (logs / "stdout").read_text(), seconds, usage.ru_maxrss / 1024 ** 2


def run_smoke(runs: Path) -> dict[str, Any]:
    """experiments/sd15_16ch_smoke.yaml end to end in a subprocess, then ``tocsr-nas extract`` on its search.

    Returns the stage times (from the run's ``run_summary.json``), the pipeline's wall time, the peak RSS of
    either process, and the compact UNet's params/GMACs as ``extract`` prints them. ``runs`` keeps the run folder
    (``runs/sd15_16ch_smoke``) and the logs.
    """
    _, wall, peak = _child([sys.executable, "-m", "tocsr_nas", "run", str(SMOKE_YAML), "--runs-dir", str(runs)],
                           runs / "logs" / "run")
    run_dir = runs / "sd15_16ch_smoke"
    summary = json.loads((run_dir / "run_summary.json").read_text())
    from tocsr_nas.experiments import resolve

    (_, config), = resolve(SMOKE_YAML)
    eps = f"{config.extract.eps:g}"
    stdout, extract_s, extract_peak = _child([sys.executable, "-m", "tocsr_nas", "extract", str(run_dir / "search"),
                                              "--eps", eps, "--device", "cpu", "--out", str(runs / "compact")],
                                             runs / "logs" / "extract")
    line = next((x for x in stdout.splitlines() if _COMPACT.match(x)), None)
    if line is None:
        raise RuntimeError(f"tocsr-nas extract printed no compact-UNet line: {stdout[-1000:]}")
    params, gmacs, latent, teacher_params, teacher_gmacs = (float(g) for g in _COMPACT.match(line).groups())
    return {"command": f"tocsr-nas run experiments/{SMOKE_YAML.name} && tocsr-nas extract RUN/search --eps {eps}",
            "device": "cpu", "threads": 1, "wall_s": wall, "stages_s": {k: v["seconds"] for k, v in summary.items()},
            "extract_cli_s": extract_s, "peak_rss_gib": max(peak, extract_peak), "extract_line": line,
            "compact": {"params_m": params, "gmacs": gmacs, "latent": int(latent), "teacher_params_m": teacher_params,
                        "teacher_gmacs": teacher_gmacs, "params_ratio": teacher_params / params,
                        "macs_ratio": teacher_gmacs / gmacs}}


def markdown(data: dict[str, Any]) -> str:
    """The cells table and the smoke paragraph, each with the command that measured it."""
    lines: list[str] = []
    cells = data.get("cells")
    if cells:
        lines += [("Every figure was measured on the device named in its row (no GPU was present unless a row says "
                   "cuda). CPU rows run the teacher in float32, CUDA rows under bfloat16 autocast; candidates always "
                   "train in float32. Batch 1; gaussian latents; untrained (seeded) teacher weights for sd15-16ch. "
                   "Distillation is planned as `distill-blocks` plans it (unit groups whose probed one-step memory "
                   f"fits {cells['max_memory_gb']:g} GiB); candidate-steps/s is measured over the group named in "
                   "the row (its candidates' steps, its teacher forwards included). The plan's estimate is its "
                   "biggest group's; peak RSS is the whole cell process's (teacher, supernet, probe, evaluator)."), "",
                  ("| teacher | latent | device | dtype | teacher forward (s) | groups | plan estimate (GiB) "
                   "| measured group | candidate-steps/s | its trainable candidates | evaluator archs/s | peak RSS (GiB) "
                   "| peak CUDA (GiB) | build (s) |"),
                  "|---|---:|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        for cell in cells["rows"]:
            if "error" in cell:
                lines.append(f"| {cell['teacher']} | {cell['latent']} | {cell['device']} | | failed: "
                             f"{cell['error'].replace('|', '/')} | | | | | | | | | |")
                continue
            cuda = f"{cell['peak_cuda_gib']:.2f}" if "peak_cuda_gib" in cell else "-"
            group = cell["measured_group"]
            lines.append(f"| {cell['teacher']} | {cell['latent']} | {cell['device']} | {cell['dtype']} | "
                         f"{cell['teacher_forward_s']:.3f} | {cell['groups']} | {cell['plan_estimate_gib']:.2f} | "
                         f"{group['index']} ({group['units']} units, {group['candidates']} of {cell['plan_candidates']} candidates) | "
                         f"{cell['candidate_steps_per_s']:.2f} | {cell['trainable_candidates']} | "
                         f"{cell['archs_per_s']:.2f} | {cell['peak_rss_gib']:.2f} | {cuda} | {cell['build_s']:.0f} |")
        if cells.get("not_measured"):
            lines += ["", "Not measured (the run was stopped before them): " + ", ".join(cells["not_measured"]) + "."]
        lines += ["", _provenance(cells)]
    smoke = data.get("smoke")
    if smoke:
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in smoke["stages_s"].items())
        lines += ([""] if lines else []) + [
            "## Smoke pipeline (device cpu, one thread)", "",
            (f"`{smoke['command']}` (experiments/sd15_16ch_smoke.yaml): the pipeline's wall time {smoke['wall_s']:.0f} s "
             f"({stages}); then the `tocsr-nas extract` command (which also loads the compact UNet back and runs it "
             f"once) {smoke['extract_cli_s']:.0f} s; peak RSS {smoke['peak_rss_gib']:.2f} GiB (the larger of the two "
             f"processes'). `extract` prints:"), "", f"    {smoke['extract_line']}", "",
            _provenance(smoke)]
    return "\n".join(lines) + "\n"


def _provenance(section: dict[str, Any]) -> str:
    load = section["load_average"]
    return (f"Measured {section['date']} by `{section['benchmark_command']}`; load average (1/5/15 min) "
            + "; ".join(f"{when} {' / '.join(f'{x:.1f}' for x in values)}" for when, values in load.items())
            + f" on {section['cpu_count']} CPUs (a shared machine: times are slower than alone).")


def _previous(out: Path) -> dict[str, Any]:
    """The sections of an earlier ``sd_scale.json`` in ``out`` (kept when this run does not redo them)."""
    try:
        data = json.loads((out / "sd_scale.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: data[k] for k in ("cells", "smoke") if isinstance(data.get(k), dict)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", default=DEFAULT_CELLS,
                        help="teacher:latent pairs, comma-separated, or 'none' (keep the cells already in --out)")
    parser.add_argument("--devices", default=None, help="comma-separated (default: cpu, and cuda when present)")
    parser.add_argument("--steps", type=int, default=2, help="distillation steps per cell")
    parser.add_argument("--archs", type=int, default=3, help="evaluated archs per cell")
    parser.add_argument("--max-memory-gb", type=float, default=MAX_MEMORY_GB,
                        help=f"the distillation plan's memory budget (default {MAX_MEMORY_GB:g})")
    parser.add_argument("--run-smoke", action="store_true",
                        help="run experiments/sd15_16ch_smoke.yaml end to end (else keep the smoke figures in --out)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: teacher:latent:device, prints JSON
    args = parser.parse_args(argv)
    if args.cell:
        teacher, latent, device = args.cell.split(":", 2)
        print(json.dumps(run_cell(teacher, int(latent), device, args.steps, args.archs, args.max_memory_gb)))
        return 0
    import torch
    from _common import machine, write_results

    out = Path(args.out)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    items = [] if args.cells == "none" else args.cells.split(",")
    for item in items:  # refused before anything runs or is written
        teacher, _, latent = item.partition(":")
        if teacher not in SPACES or not latent.isdigit():
            raise SystemExit(f"--cells: '{item}' is not teacher:latent with teacher one of {', '.join(SPACES)}")
    command = "python benchmarks/sd_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
    data: dict[str, Any] = {**_previous(out), "machine": machine()}

    def section() -> dict[str, Any]:
        return {"benchmark_command": command, "date": data["machine"]["date"], "cpu_count": os.cpu_count(),
                "load_average": {"start": os.getloadavg()}}

    def save() -> None:
        write_results("sd_scale", data, markdown(data), out)

    if items:
        data["cells"] = {**section(), "max_memory_gb": args.max_memory_gb, "steps": args.steps, "archs": args.archs,
                         "rows": [], "not_measured": [f"{i}:{d}" for d in devices for i in items]}
        for device in devices:
            for item in items:
                teacher, latent = item.split(":")
                child = [sys.executable, __file__, "--cell", f"{teacher}:{latent}:{device}", "--steps",
                         str(args.steps), "--archs", str(args.archs), "--max-memory-gb", str(args.max_memory_gb)]
                print("running", " ".join(child[2:]), flush=True)
                env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
                done = subprocess.run(child, capture_output=True, text=True, check=False, env=env)
                if done.returncode != 0:
                    data["cells"]["rows"].append({"teacher": teacher, "latent": int(latent), "device": device,
                                                  "error": _error(done)})
                else:
                    data["cells"]["rows"].append(json.loads(done.stdout.strip().splitlines()[-1]))
                data["cells"]["not_measured"].remove(f"{item}:{device}")
                print(json.dumps(data["cells"]["rows"][-1]), flush=True)
                data["cells"]["load_average"]["end"] = os.getloadavg()
                save()  # after every cell: a stopped run keeps them
    if args.run_smoke:
        smoke = section()
        with tempfile.TemporaryDirectory() as runs:
            smoke.update(run_smoke(Path(runs)))
        smoke["load_average"]["end"] = os.getloadavg()
        data["smoke"] = smoke
        print(json.dumps(smoke), flush=True)
    save()
    print(f"wrote {out / 'sd_scale.json'} and {out / 'sd_scale.md'}")
    return 0


def _error(done: subprocess.CompletedProcess) -> str:
    """A failed cell's real error: the last line of its traceback, or how it died."""
    lines = [x for x in done.stderr.strip().splitlines() if x.strip()]
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        cause = " (by the kernel's OOM killer, most likely)" if done.returncode == -signal.SIGKILL else ""
        return f"killed by {name}{cause}" + (f"; last output: {lines[-1][:160]}" if lines else "")
    return (lines[-1] if lines else f"exit status {done.returncode}, no output")[:300]


if __name__ == "__main__":
    raise SystemExit(main())
