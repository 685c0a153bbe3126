"""Search efficiency: every strategy against the true Pareto front of an enumerable space.

1. Distil the candidates of ``tiny_ldm_enum`` (4096 archs) from the tiny-ldm teacher (resumable, cached).
2. Evaluate every arch once with the distillation evaluator -> the true front of (relative loss, GMACs);
   this also measures the evaluator's throughput.
3. Run each strategy for ``--budget`` evaluations x ``--seeds`` seeds, answering from that table (the evaluator is
   deterministic, so the strategies see exactly what they would see live), and report the hypervolume ratio to
   the true front after 25/50/100 evaluations and the evaluations needed to reach 95%.

Every registered strategy runs by default (``--strategies`` picks some): the ``optuna-*`` ones when Optuna is
installed (extra ``optuna``; ``optuna-gp`` takes seconds per ask), the ``nni-*`` ones when NNI is (extra ``nni``, in
its own environment: run this script with that environment's Python).

Usage::

    python benchmarks/search_efficiency.py [--work benchmarks/.cache/search_efficiency] [--seeds 5] [--budget 100]
    python benchmarks/search_efficiency.py --strategies random bo optuna-tpe optuna-nsga2 --seeds 2
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_results  # noqa: E402

import search_spaces  # noqa: E402
from analysis.pareto import hypervolume, pareto_mask  # noqa: E402
from evaluators.base import Evaluator  # noqa: E402
from evaluators.cost import CostEvaluator  # noqa: E402
from evaluators.distillation import DistillationEvaluator, ValidationSet  # noqa: E402
from strategies import available_strategies  # noqa: E402
from tocsr_nas.distill.config import DistillConfig  # noqa: E402
from tocsr_nas.distill.run import distill_blocks  # noqa: E402
from tocsr_nas.distill.store import load_surrogates  # noqa: E402
from tocsr_nas.profiling.cost_table import build_cost_table  # noqa: E402
from tocsr_nas.search import SearchConfig, SearchRunner  # noqa: E402
from tocsr_nas.distill.inputs import noise_scheduler  # noqa: E402
from tocsr_nas.search.components import validation_latents  # noqa: E402
from tocsr_nas.search.config import ValidationConfig  # noqa: E402
from tocsr_nas.supernet import Supernet  # noqa: E402
from tocsr_nas.teachers import load_teacher  # noqa: E402

SPACE = "tiny_ldm_enum"
EPS_GRID = [0.05, 0.1, 0.2, 0.4, 0.8]  # fixed in advance (not read off the true front)
CHECKPOINTS = (25, 50, 100)


class LookupEvaluator(Evaluator):
    """Answers from the exhaustive evaluation (same numbers the live evaluator gives; deterministic)."""

    name = "lookup"

    def __init__(self, losses: dict[str, float]) -> None:
        self.losses = losses

    def evaluate(self, arch, budget=None):
        return {"loss": self.losses[arch.arch_id]}


def exhaustive(work: Path, validation_count: int) -> tuple[pd.DataFrame, dict]:
    """Distil the space's candidates and evaluate every arch (cached in ``work``)."""
    space = search_spaces.load(SPACE)
    teacher = load_teacher(space.teacher)
    table = build_cost_table(teacher, space, ptflops=False, progress=False)
    start = time.perf_counter()
    distill_blocks(DistillConfig(space=SPACE), work / "surrogates")
    distill_s = time.perf_counter() - start
    cache = work / "all_archs.csv"
    if cache.is_file():
        return pd.read_csv(cache), {"distill_seconds": distill_s, "table": table}
    supernet = Supernet(teacher, space)
    load_surrogates(supernet, work / "surrogates")
    latents = validation_latents(teacher, ValidationConfig(count=validation_count), table.latent_size)
    validation = ValidationSet.build(teacher, latents, batch_size=validation_count, scheduler=noise_scheduler(space.teacher))
    evaluator = DistillationEvaluator(supernet, validation)
    rows = []
    start = time.perf_counter()
    for arch in space.enumerate():
        cost = table.cost(arch)
        rows.append({"arch_id": arch.arch_id, "arch": str(arch), "gmacs": cost.gmacs, "params_m": cost.params / 1e6,
                     **evaluator.evaluate(arch)})
    seconds = time.perf_counter() - start
    frame = pd.DataFrame(rows)
    frame.to_csv(cache, index=False)
    return frame, {"distill_seconds": distill_s, "evaluate_seconds": seconds, "archs_per_second": len(rows) / seconds,
                   "table": table}


def run_strategy(name: str, seed: int, budget: int, work: Path, losses: dict[str, float], table) -> pd.DataFrame:
    space = table.space
    out = work / "runs" / f"{name}-{seed}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh search each time, so the timings are real
    config = SearchConfig(space=SPACE, strategy=name, budget=budget, seed=seed, eps=EPS_GRID)
    runner = SearchRunner(config, out, space=space, table=table, cheap=[CostEvaluator(table)],
                          expensive=[LookupEvaluator(losses)])
    return runner.run(progress=False)


def hv_curve(frame: pd.DataFrame, reference: tuple[float, float], true_hv: float, budget: int) -> np.ndarray:
    """Hypervolume ratio after each evaluation."""
    complete = frame[frame.state == "complete"][["loss", "gmacs"]].to_numpy(dtype=float)
    curve = np.zeros(budget)
    for k in range(1, budget + 1):
        points = complete[:k]
        curve[k - 1] = hypervolume(points, reference) / true_hv if len(points) else 0.0
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(Path(__file__).parent / ".cache" / "search_efficiency"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--validation", type=int, default=16, help="validation latents per evaluation")
    parser.add_argument("--strategies", nargs="+", default=available_strategies())
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work)
    frame, info = exhaustive(work, args.validation)
    table = info.pop("table")
    losses = dict(zip(frame.arch_id, frame.loss))
    points = frame[["loss", "gmacs"]].to_numpy(dtype=float)
    reference = (float(points[:, 0].max()) * 1.1, float(points[:, 1].max()) * 1.1)
    front = points[pareto_mask(points)]
    true_hv = hypervolume(front, reference)
    curves: dict[str, list[np.ndarray]] = {}
    timings: dict[str, float] = {}
    for name in args.strategies:
        start = time.perf_counter()
        curves[name] = [hv_curve(run_strategy(name, seed, args.budget, work, losses, table), reference, true_hv,
                                 args.budget) for seed in range(args.seeds)]
        timings[name] = (time.perf_counter() - start) / args.seeds
        print(f"{name}: HV@{args.budget} = {np.mean([c[-1] for c in curves[name]]):.3f}", flush=True)
    rows = []
    for name, runs in curves.items():
        stack = np.stack(runs)
        reach = [int(np.argmax(c >= 0.95)) + 1 if (c >= 0.95).any() else None for c in runs]
        row = {"strategy": name, "seconds_per_run": timings[name],
               "evals_to_95": [r for r in reach], "runs_reaching_95": sum(r is not None for r in reach)}
        for k in CHECKPOINTS:
            if k <= args.budget:
                row[f"hv@{k}_mean"] = float(stack[:, k - 1].mean())
                row[f"hv@{k}_std"] = float(stack[:, k - 1].std())
        rows.append(row)
    result = {"space": SPACE, "archs": len(frame), "true_front_size": int(len(front)), "reference": reference,
              "eps_grid": EPS_GRID, "budget": args.budget, "seeds": args.seeds,
              "validation_latents": args.validation, **{k: v for k, v in info.items()}, "strategies": rows,
              "curves": {name: np.stack(runs).mean(0).tolist() for name, runs in curves.items()}}
    lines = [
        f"Space `{SPACE}` ({len(frame)} archs over the tiny-ldm teacher, surrogates distilled with the default "
        f"`DistillConfig`); every arch evaluated once with the distillation evaluator ({args.validation} validation "
        f"latents) to get the true front of (relative loss, GMACs): {len(front)} points. Evaluator throughput: "
        f"{info.get('archs_per_second', float('nan')):.1f} archs/s (one thread). Hypervolume reference point: "
        f"loss {reference[0]:.3f}, {reference[1]:.3f} GMACs (1.1x the worst of each). Each strategy: "
        f"{args.budget} evaluations x {args.seeds} seeds; `bo` uses the fixed eps grid {EPS_GRID}.",
        "",
        "| strategy | " + " | ".join(f"HV ratio @{k}" for k in CHECKPOINTS if k <= args.budget) +
        " | runs reaching 95% | evals to 95% (per seed) | s per run |",
        "|---|" + "---:|" * len([k for k in CHECKPOINTS if k <= args.budget]) + "---:|---|---:|",
    ]
    for row in rows:
        cells = [f"{row[f'hv@{k}_mean']:.3f} ± {row[f'hv@{k}_std']:.3f}" for k in CHECKPOINTS if k <= args.budget]
        lines.append(f"| {row['strategy']} | " + " | ".join(cells) +
                     f" | {row['runs_reaching_95']}/{args.seeds} | {row['evals_to_95']} | {row['seconds_per_run']:.1f} |")
    write_results("search_efficiency", result, "\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
