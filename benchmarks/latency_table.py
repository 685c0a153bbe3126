"""Latency-table benchmark: how long the table takes to build, and how far table sums are from whole-model timings.

Usage::

    python benchmarks/latency_table.py [--space tiny_ldm] [--archs 20] [--repeats 9] [--threads 1] [--out DIR]

Torch eager on this CPU at ``--threads`` threads, batch 1, fp32. First the table is built as a search builds it
(timed end to end). Then, for the error, every distinct candidate call of the table, the teacher's compact UNet
(the fixed part) and the whole compact UNets of ``--archs`` random archs are measured side by side in one
interleaved run (warm-up, then ``--repeats`` rounds that time every call once, one call per timing; the median per call), so load
changes on a shared machine shift table entries and whole models alike. The load average is recorded before and
after.
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
from tocsr_nas.profiling.latency import (LatencyTarget, build_latency_table, compare_latency,  # noqa: E402
                                         measure_many, model_call, plan_latency_table)
from tocsr_nas.teachers import load_teacher  # noqa: E402
from tocsr_nas.units import build_unit_graph, unit_infos  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="tiny_ldm")
    parser.add_argument("--archs", type=int, default=20, help="random archs timed as whole models")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    load_before = os.getloadavg()
    space = search_spaces.load(args.space)
    teacher = load_teacher(space.teacher)
    target = LatencyTarget(threads=args.threads, repeats=args.repeats)
    start = time.perf_counter()
    build_latency_table(teacher, space, target)
    build_s = time.perf_counter() - start
    print(f"table built in {build_s:.1f} s", flush=True)

    rng = np.random.default_rng(args.seed)
    archs: list = []
    while len(archs) < args.archs:
        arch = space.sample(rng)
        if arch not in archs:
            archs.append(arch)
    plan = plan_latency_table(teacher, space, target)
    latent_size = space.latent_size or teacher.latent_size
    units = {u.path: u for u in unit_infos(build_unit_graph(teacher.unet, model_inputs(teacher, latent_size)))}
    inputs = teacher.example_inputs(batch_size=1, latent_size=latent_size)
    calls = dict(plan.calls)
    calls.update({arch.arch_id: model_call(extract_fresh(teacher, space, arch, units).unet, inputs, target)
                  for arch in archs})
    start = time.perf_counter()
    times = measure_many(calls, target)
    side_by_side_s = time.perf_counter() - start
    table = plan.table(times)
    check = compare_latency(table, archs, times)
    load_after = os.getloadavg()
    signed = (check.ms_table - check.ms_model) / check.ms_model
    result = {
        "space": args.space, "threads": args.threads, "repeats": args.repeats, "archs": len(archs), "seed": args.seed,
        "target": target.key, "table_build_seconds": build_s, "distinct_calls": len(plan.calls),
        "placements": len(plan.rows), "side_by_side_seconds": side_by_side_s,
        "teacher_ms": table.teacher_ms, "fixed_ms": table.fixed_ms,
        "median_rel_error": float(check.rel_error.median()), "mean_rel_error": float(check.rel_error.mean()),
        "max_rel_error": float(check.rel_error.max()), "median_signed_error": float(signed.median()),
        "load_average_before": load_before, "load_average_after": load_after,
        "rows": check.to_dict(orient="records"),
    }
    lines = [
        (f"Latency table of `{args.space}` on this CPU: torch eager, fp32, batch 1, {args.threads} thread(s), "
         f"median of {args.repeats} interleaved rounds after warm-up. Table build (as a search builds it): "
         f"**{build_s:.1f} s** for {len(plan.rows)} placements ({len(plan.calls)} distinct calls incl. the teacher)."),
        "",
        (f"Table sum vs whole-model time over {len(archs)} random archs (measured side by side in one run, "
         f"{side_by_side_s:.0f} s): median error **{result['median_rel_error']:.1%}**, mean "
         f"{result['mean_rel_error']:.1%}, max {result['max_rel_error']:.1%}, median signed error (table - model) "
         f"{result['median_signed_error']:+.1%}. Teacher (compact) {table.teacher_ms:.1f} ms, fixed part "
         f"{table.fixed_ms:.1f} ms. Target: median error <= 10%."),
        "",
        (f"Load average (1/5/15 min) before {'/'.join(f'{v:.1f}' for v in load_before)}, after "
         f"{'/'.join(f'{v:.1f}' for v in load_after)} on {os.cpu_count()} CPUs (a shared machine: absolute times "
         "vary with the load; the error compares times taken in the same window)."),
        "",
        "| arch | table (ms) | model (ms) | error |",
        "|---|---:|---:|---:|",
        *[f"| `{r['arch']}` | {r['ms_table']:.1f} | {r['ms_model']:.1f} | {r['rel_error']:.1%} |"
          for r in result["rows"]],
        "",
        (f"Command: `python benchmarks/latency_table.py --space {args.space} --archs {args.archs} "
         f"--repeats {args.repeats} --threads {args.threads} --seed {args.seed}`"),
    ]
    write_results("latency_table", result, "\n".join(lines) + "\n", args.out)
    print("\n".join(lines[:3]))


if __name__ == "__main__":
    main()
