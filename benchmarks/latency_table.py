"""Latency-table benchmark: how long the table takes to build, and how far table sums are from whole-model timings.

Usage::

    python benchmarks/latency_table.py [--space tiny_ldm] [--archs 20] [--repeats 9] [--threads 1]
                                       [--runtimes torch onnxruntime] [--out DIR]

On this CPU at ``--threads`` threads, batch 1, fp32, for each of ``--runtimes``: ``torch`` (eager) and
``onnxruntime`` (every unit and whole model exported to ONNX and run in an ONNX Runtime session; needs the extra
``onnx``). Per runtime, the table is first planned and measured as a search builds it with an empty cache (timed
end to end, including the ONNX exports). Then, for the error, every distinct candidate call of every runtime's
table, the teachers' compact UNets (the fixed parts) and the whole compact UNets of ``--archs`` random archs are
measured side by side in one interleaved run (warm-up, then ``--repeats`` rounds that time every call once, one call
per timing; the median per call), so load changes on a shared machine shift table entries and whole models of all
runtimes alike. The load average is recorded before and after. Results: ``latency_table.{json,md}`` for torch alone,
``latency_table_<runtime>_...{json,md}`` otherwise.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_results  # noqa: E402

import search_spaces  # noqa: E402
from tocsr_nas.profiling.cost_table import extract_fresh, model_inputs  # noqa: E402
from tocsr_nas.profiling.latency import (  # noqa: E402
    RUNTIMES,
    LatencyTarget,
    compare_latency,
    measure_many,
    model_call,
    plan_latency_table,
)
from tocsr_nas.teachers import load_teacher  # noqa: E402
from tocsr_nas.units import build_unit_graph, unit_infos  # noqa: E402

RUNTIME_NAMES = {"torch": "torch eager", "onnxruntime": "ONNX Runtime (CPU)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="tiny_ldm")
    parser.add_argument("--archs", type=int, default=20, help="random archs timed as whole models")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=["torch"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    runtimes = list(dict.fromkeys(args.runtimes))
    load_before = os.getloadavg()
    space = search_spaces.load(args.space)
    teacher = load_teacher(space.teacher)
    targets = {r: LatencyTarget(threads=args.threads, repeats=args.repeats, runtime=r) for r in runtimes}

    plans, build_s = {}, {}
    for runtime, target in targets.items():  # as a search builds its table with an empty cache
        start = time.perf_counter()
        plans[runtime] = plan_latency_table(teacher, space, target)
        measure_many(plans[runtime].calls, target)
        build_s[runtime] = time.perf_counter() - start
        print(f"{runtime}: table built in {build_s[runtime]:.1f} s", flush=True)

    rng = np.random.default_rng(args.seed)
    archs: list = []
    while len(archs) < args.archs:
        arch = space.sample(rng)
        if arch not in archs:
            archs.append(arch)
    latent_size = space.latent_size or teacher.latent_size
    units = {u.path: u for u in unit_infos(build_unit_graph(teacher.unet, model_inputs(teacher, latent_size)))}
    inputs = teacher.example_inputs(batch_size=1, latent_size=latent_size)
    calls = {}
    for runtime, target in targets.items():
        calls.update(plans[runtime].calls)  # keys carry the runtime (target.key), so no two runtimes collide
        calls.update({f"{runtime}/{arch.arch_id}": model_call(extract_fresh(teacher, space, arch, units), inputs, target)
                      for arch in archs})
    start = time.perf_counter()
    times = measure_many(calls, targets[runtimes[0]])  # every target has the same threads, warmup and repeats
    side_by_side_s = time.perf_counter() - start
    load_after = os.getloadavg()

    result = {"space": args.space, "threads": args.threads, "repeats": args.repeats, "archs": len(archs),
              "seed": args.seed, "runtimes": runtimes, "side_by_side_seconds": side_by_side_s,
              "load_average_before": load_before, "load_average_after": load_after, "by_runtime": {}}
    lines = [(f"Latency tables of `{args.space}` on this CPU: fp32, batch 1, {args.threads} thread(s), median of "
              f"{args.repeats} interleaved rounds after warm-up. Table sum vs whole-model time over {len(archs)} random "
              f"archs, every runtime's units and whole models measured side by side in one run "
              f"({side_by_side_s:.0f} s). Target: median error <= 10%."), "",
             "| runtime | table build (s) | placements | distinct calls | teacher (ms) | fixed part (ms) | median error "
             "| mean error | max error | median signed error (table - model) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    checks = {}
    for runtime, target in targets.items():
        plan = plans[runtime]
        table = plan.table(times)
        measured = {arch.arch_id: times[f"{runtime}/{arch.arch_id}"] for arch in archs}
        check = checks[runtime] = compare_latency(table, archs, measured)
        signed = (check.ms_table - check.ms_model) / check.ms_model
        entry = {"target": target.key, "table_build_seconds": build_s[runtime], "distinct_calls": len(plan.calls),
                 "placements": len(plan.rows), "teacher_ms": table.teacher_ms, "fixed_ms": table.fixed_ms,
                 "median_rel_error": float(check.rel_error.median()), "mean_rel_error": float(check.rel_error.mean()),
                 "max_rel_error": float(check.rel_error.max()), "median_signed_error": float(signed.median()),
                 "rows": check.to_dict(orient="records")}
        result["by_runtime"][runtime] = entry
        lines.append(f"| {RUNTIME_NAMES[runtime]} | {build_s[runtime]:.1f} | {len(plan.rows)} | {len(plan.calls)} | "
                     f"{table.teacher_ms:.1f} | {table.fixed_ms:.1f} | **{entry['median_rel_error']:.1%}** | "
                     f"{entry['mean_rel_error']:.1%} | {entry['max_rel_error']:.1%} | "
                     f"{entry['median_signed_error']:+.1%} |")
    lines += ["", ("Table build includes planning (building every candidate) and, for ONNX Runtime, exporting each "
                   "call to ONNX on its first call."), ""]
    if len(runtimes) > 1:
        first, *others = runtimes
        speed = {r: float(np.median(checks[first].ms_model / checks[r].ms_model)) for r in others}
        result["median_speedup_vs_" + first] = speed
        lines += [", ".join(f"Whole models: {RUNTIME_NAMES[r]} is {s:.2f}x as fast as {RUNTIME_NAMES[first]} "
                            "(median over the archs of the per-arch time ratio, measured side by side)"
                            for r, s in speed.items()) + ".", ""]
    lines += [(f"Load average (1/5/15 min) before {'/'.join(f'{v:.1f}' for v in load_before)}, after "
               f"{'/'.join(f'{v:.1f}' for v in load_after)} on {os.cpu_count()} CPUs (a shared machine: absolute "
               "times vary with the load; the errors and ratios compare times taken in the same window)."), "",
              "| arch | " + " | ".join(f"{r} table (ms) | {r} model (ms) | {r} error" for r in runtimes) + " |",
              "|---|" + "---:|---:|---:|" * len(runtimes)]
    for i, arch in enumerate(archs):
        cells = [f"{c.ms_table[i]:.1f} | {c.ms_model[i]:.1f} | {c.rel_error[i]:.1%}" for c in checks.values()]
        lines.append(f"| `{arch}` | " + " | ".join(cells) + " |")
    lines += ["", (f"Command: `python benchmarks/latency_table.py --space {args.space} --archs {args.archs} "
                   f"--repeats {args.repeats} --threads {args.threads} --runtimes {' '.join(runtimes)} "
                   f"--seed {args.seed}`")]
    name = "latency_table" if runtimes == ["torch"] else "latency_table_" + "_".join(runtimes)
    write_results(name, result, "\n".join(lines) + "\n", args.out)
    print("\n".join(lines[:6]))


if __name__ == "__main__":
    main()
