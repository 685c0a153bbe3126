"""Cost-table benchmark: build time and peak memory per shipped space, lookup throughput, and the check that
``cost(arch)`` equals a whole-model count of the extracted UNet for random archs.

Usage::

    python benchmarks/cost_table.py [--spaces sd15_nanosd tiny_ldm tiny_ldm_per_unit] [--verify 20] [--out DIR]

Each space is profiled in a fresh subprocess so its peak resident memory is its own.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_results  # noqa: E402

import search_spaces  # noqa: E402
from tocsr_nas.profiling.cost_table import build_cost_table, verify_cost_table  # noqa: E402
from tocsr_nas.teachers import load_teacher  # noqa: E402


def profile_space(name: str, n_verify: int, seed: int, threads: int) -> dict:
    """Build one space's cost table, time lookups, verify against whole-model counts (runs in a subprocess)."""
    import torch  # noqa: PLC0415

    torch.set_num_threads(threads)
    space = search_spaces.load(name)
    teacher = load_teacher(space.teacher)
    start = time.perf_counter()
    table = build_cost_table(teacher, space, ptflops=True, progress=False)
    build_s = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(20000)]
    start = time.perf_counter()
    for arch in archs:
        table.cost(arch)
    lookups_per_s = len(archs) / (time.perf_counter() - start)
    indices = np.stack([space.encode(a) for a in archs])
    start = time.perf_counter()
    table.cost_matrix(indices)
    matrix_per_s = len(archs) / (time.perf_counter() - start)
    start = time.perf_counter()
    check = verify_cost_table(table, teacher, [space.sample(rng) for _ in range(n_verify)])
    verify_s = time.perf_counter() - start
    frame = table.to_frame()
    teacher_cost = table.teacher_total
    return {
        "space": name, "teacher": space.teacher, "latent_size": table.latent_size, "decisions": len(space.decisions),
        "archs": space.size, "candidate_placements": len(frame),
        "build_seconds": build_s, "peak_rss_gib": peak_gib,
        "lookups_per_second": lookups_per_s, "vectorised_costs_per_second": matrix_per_s,
        "teacher_params": teacher_cost.params, "teacher_gmacs": teacher_cost.gmacs,
        "teacher_gmacs_no_attention": teacher_cost.gmacs_no_attention,
        "ptflops_over_fvcore_no_attention": float(frame.ptflops_macs.sum() / frame.macs_no_attention.sum()),
        "verified_archs": len(check), "verify_seconds": verify_s,
        "params_exact": bool((check.params_table == check.params_model).all()),
        "max_macs_rel_error": float(check.macs_rel_error.max()),
        "max_macs_no_attention_rel_error": float(check.macs_no_attention_rel_error.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", nargs="+", default=["sd15_nanosd", "tiny_ldm", "tiny_ldm_per_unit"])
    parser.add_argument("--verify", type=int, default=20, help="random archs checked per space")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared machine)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: profile one space and print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(profile_space(args.one, args.verify, args.seed, args.threads)))
        return
    rows = []
    for name in args.spaces:
        out = subprocess.run([sys.executable, __file__, "--one", name, "--verify", str(args.verify), "--seed",
                              str(args.seed), "--threads", str(args.threads)], check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{name}: built in {rows[-1]['build_seconds']:.0f} s", flush=True)
    lines = [
        "Cost table of every shipped search space: fvcore MACs with the SDPA handler (and without attention "
        "matmuls) per candidate at its unit's input shape, ptflops (aten) recorded beside them; batch 1. Build time "
        f"includes the ptflops cross-check; torch threads: {args.threads}. Peak memory is the profiling subprocess's peak RSS. Verification builds "
        f"{args.verify} random archs per space as whole compact UNets and counts them from scratch.",
        "",
        "| space | teacher | archs | placements | build (s) | peak RSS (GiB) | cost(arch)/s | vectorised/s | "
        "verified | params exact | max MAC error | max MAC error (no attn) | ptflops/fvcore (no attn) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['space']} | {r['teacher']} @{r['latent_size']} | {r['archs']:.3g} | {r['candidate_placements']} | "
            f"{r['build_seconds']:.0f} | {r['peak_rss_gib']:.2f} | {r['lookups_per_second']:,.0f} | "
            f"{r['vectorised_costs_per_second']:,.0f} | {r['verified_archs']} | {r['params_exact']} | "
            f"{r['max_macs_rel_error']:.2e} | {r['max_macs_no_attention_rel_error']:.2e} | "
            f"{r['ptflops_over_fvcore_no_attention']:.4f} |")
    lines += ["", "Targets (issue 2): sd15_nanosd table in < 10 min and < 12 GiB; >= 100,000 cost(arch) lookups/s; "
              "cost(arch) within 0.5% of the whole-model count, params exact."]
    write_results("cost_table", {"spaces": rows, "verify": args.verify, "threads": args.threads}, "\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
