"""Search efficiency: every strategy against the true Pareto front of small, enumerable spaces.

For each space (default ``tiny_ldm_enum``: 6 stage-wise decisions, 4096 archs; ``tiny_ldm_unit_enum``: 6 per-unit
decisions of mixed cardinality, 1728 archs):

1. Distil the space's candidates from its teacher with the default ``DistillConfig`` (resumable, cached).
2. Evaluate every arch once with the search's expensive evaluator (``--evaluator``, default the default proxy
   ``distillation``, built through the search's own assembly) -> the true front of (loss, GMACs). This is cached on
   disk under a key of the space fingerprint, teacher hash, surrogates hash and evaluator fingerprint + options, so
   a rerun reuses it; a killed evaluation resumes from its partial file. It also measures the evaluator's
   throughput (archs/s).
3. Drive each strategy by ask(1)/tell for ``--budget`` evaluations x ``--seeds`` seeds, answering from that table
   (the evaluator is deterministic, so a strategy sees exactly what it would see live). The strategy is built the
   way ``search`` builds it (``search_strategy``: the problem carries the surrogates' per-candidate held-out errors,
   which ``bo-prior`` uses). Reported: hypervolume ratio to the true front after 25/50/100 evaluations (mean and
   bootstrap 95% CI of the mean), evaluations to reach 95% of the true front's HV (median and IQR over seeds; a run
   that never reaches it counts as > budget), and seconds per run.

Strategies are given as ``name`` or ``name:key=value,key=value`` (strategy options, values parsed as YAML), e.g.
``bo:skip_void_eps=false``. The ``nni-*`` strategies need NNI, which lives in its own environment: run them with
that interpreter and ``--merge``, which adds their rows to the existing results file (same exhaustive cache).

Usage::

    python benchmarks/search_efficiency.py [--spaces tiny_ldm_enum tiny_ldm_unit_enum] [--seeds 10] [--budget 100]
    /work/venv-nni/bin/python benchmarks/search_efficiency.py --strategies nni-tpe nni-evolution --merge
"""
from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, fmt_evals, machine, write_results  # noqa: E402

import search_spaces  # noqa: E402
from analysis.pareto import hypervolume, pareto_mask  # noqa: E402
from strategies import Trial, available_strategies  # noqa: E402
from tocsr_nas.atomic import digest, write_json, write_text  # noqa: E402
from tocsr_nas.distill.config import DistillConfig  # noqa: E402
from tocsr_nas.distill.run import distill_blocks  # noqa: E402
from tocsr_nas.distill.store import surrogates_hash, teacher_hash  # noqa: E402
from tocsr_nas.profiling.cost_table import build_cost_table, space_fingerprint  # noqa: E402
from tocsr_nas.search import SearchConfig  # noqa: E402
from tocsr_nas.search.components import build_evaluators, evaluation_context  # noqa: E402
from tocsr_nas.search.config import ValidationConfig  # noqa: E402
from tocsr_nas.search.runner import search_strategy  # noqa: E402
from tocsr_nas.teachers import load_teacher  # noqa: E402

SPACES = ["tiny_ldm_enum", "tiny_ldm_unit_enum"]
DEFAULT_STRATEGIES = ["random", "evolution", "nsga2", "bo", "bo-prior", "optuna-tpe", "optuna-gp", "optuna-nsga2",
                      "nni-tpe", "nni-evolution", "nni-anneal", "nni-random"]
EPS_GRID = [0.05, 0.1, 0.2, 0.4, 0.8]  # fixed in advance (not read off the true front)
CHECKPOINTS = (25, 50, 100)
BOOTSTRAP = 10_000
FLUSH_EVERY = 50  # archs between writes of the partial exhaustive evaluation


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def parse_strategy(spec: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name:key=value,...`` -> (name, options)."""
    name, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key] = yaml.safe_load(value)
    return name, options


def search_config(space: str, surrogates: Path, args: argparse.Namespace, **extra: Any) -> SearchConfig:
    """The search config whose evaluators and strategy the benchmark uses (evaluator and options from the args)."""
    return SearchConfig(space=space, surrogates=str(surrogates), eps=EPS_GRID, latent_size=args.latent_size,
                        evaluators=["cost", {"name": args.evaluator, "options": args.evaluator_options}],
                        validation=ValidationConfig(count=args.validation, batch_size=args.validation_batch),
                        device="cpu", **extra)


def exhaustive(space_name: str, args: argparse.Namespace) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every arch of the space evaluated once (cached by content, resumable)."""
    work = Path(args.work) / space_name
    space = search_spaces.load(space_name)
    teacher = load_teacher(space.teacher)
    surrogates = work / "surrogates"
    start = time.perf_counter()
    distill_blocks(DistillConfig(space=space_name), surrogates)
    distill_s = time.perf_counter() - start
    config = search_config(space_name, surrogates, args)
    context = evaluation_context(config, work, space, teacher, surrogates_hash(surrogates))
    evaluator = next(e for e in build_evaluators(config, context) if not e.cheap)
    identity = {"space": space_fingerprint(space), "teacher": teacher_hash(teacher.unet, space),
                "surrogates": surrogates_hash(surrogates), "evaluator": evaluator.fingerprint,
                "evaluator_spec": {"name": args.evaluator, "options": args.evaluator_options},
                "validation": config.validation.model_dump(mode="json"), "latent_size": args.latent_size}
    key = digest(identity)
    table_path, info_path = work / f"exhaustive-{key}.csv", work / f"exhaustive-{key}.json"
    info = {"cache_key": key, "identity": identity, "distill_seconds_this_run": distill_s}
    if table_path.is_file() and info_path.is_file():
        return pd.read_csv(table_path), {**info, **json.loads(info_path.read_text())}
    table = build_cost_table(teacher, space, ptflops=False, progress=False)
    shard, shards = args.shard
    partials = sorted(work.glob(f"exhaustive-{key}.partial*.csv"))
    partial = work / f"exhaustive-{key}.partial-{shard}-of-{shards}.csv"
    rows = pd.read_csv(partial).to_dict("records") if partial.is_file() else []
    others = [pd.read_csv(p) for p in partials if p != partial]
    done = {r["arch_id"] for r in rows} | {a for frame in others for a in frame.arch_id}
    seconds, cpu_seconds, evaluated, load_before = 0.0, 0.0, 0, load_average()
    torch.set_num_threads(1)
    for index, arch in enumerate(space.enumerate()):
        if arch.arch_id in done or index % shards != shard:
            continue
        cost = table.cost(arch)
        tick, cpu_tick = time.perf_counter(), time.process_time()
        metrics = evaluator.evaluate(arch)
        seconds += time.perf_counter() - tick
        cpu_seconds += time.process_time() - cpu_tick
        evaluated += 1
        rows.append({"arch_id": arch.arch_id, "arch": str(arch), "gmacs": cost.gmacs, "params_m": cost.params / 1e6,
                     "loss": metrics[config.objectives[0]]})
        if evaluated % FLUSH_EVERY == 0:
            write_text(partial, pd.DataFrame(rows).to_csv(index=False))
            print(f"{space_name}: {len(rows)}/{space.size} archs evaluated", flush=True)
    write_text(partial, pd.DataFrame(rows).to_csv(index=False))
    clock = partial.with_suffix(".json")  # evaluation seconds of this shard's archs, over its runs
    spent = json.loads(clock.read_text()) if clock.is_file() else {"evaluated": 0, "seconds": 0.0, "cpu_seconds": 0.0}
    write_json(clock, {"evaluated": spent["evaluated"] + evaluated, "seconds": spent["seconds"] + seconds,
                       "cpu_seconds": spent["cpu_seconds"] + cpu_seconds})
    if shards > 1:  # the table is assembled by a run without --shard once every shard is done
        print(f"{space_name}: shard {shard}/{shards} done ({evaluated / seconds if seconds else 0:.3f} archs/s)")
        return pd.DataFrame(rows), {}
    frame = pd.concat([pd.DataFrame(rows), *others], ignore_index=True)
    if len(frame) != space.size:
        raise SystemExit(f"{space_name}: {len(frame)} of {space.size} archs in the partial files")
    clocks = [json.loads(c.read_text()) for c in work.glob(f"exhaustive-{key}.partial*.json")]
    timed, seconds = sum(c["evaluated"] for c in clocks), sum(c["seconds"] for c in clocks)
    cpu_seconds = sum(c["cpu_seconds"] for c in clocks)
    timing = {"archs": len(frame), "timed_archs": timed, "evaluate_seconds": seconds, "evaluate_cpu_seconds": cpu_seconds,
              "archs_per_second": timed / seconds if seconds else None,
              "archs_per_cpu_second": timed / cpu_seconds if cpu_seconds else None, "threads": 1, "shards": shards,
              "load_average_before": load_before, "load_average_after": load_average()}
    write_text(table_path, frame.to_csv(index=False))
    write_json(info_path, timing)
    for path in [*work.glob(f"exhaustive-{key}.partial*.csv"), *work.glob(f"exhaustive-{key}.partial*.json")]:
        path.unlink()
    return frame, {**info, **timing}


def reuse_check(space_name: str, args: argparse.Namespace, count: int) -> dict[str, Any]:
    """The evaluator with and without its prefix memo, side by side in this process: the same ``count`` archs in index
    order plus ``count`` random ones, scored alternately off/on/off/on; scores must agree bit for bit."""
    work = Path(args.work) / space_name
    space = search_spaces.load(space_name)
    config = search_config(space_name, work / "surrogates", args)
    context = evaluation_context(config, work, space, load_teacher(space.teacher), surrogates_hash(work / "surrogates"))
    evaluator = next(e for e in build_evaluators(config, context) if not e.cheap)
    ordered = list(itertools.islice(space.enumerate(), count))
    rng = np.random.default_rng(0)
    archs = ordered + [space.decode(np.unravel_index(int(i), space.cardinalities))
                       for i in rng.choice(space.size, count, replace=False)]
    memo, scores, rates = evaluator.memo, {}, {"off": [], "on": []}
    torch.set_num_threads(1)
    evaluator.evaluate(archs[0])  # the identity baseline, outside the timing
    for mode in ("off", "on", "off", "on"):
        evaluator.memo = memo if mode == "on" else None
        tick, cpu_tick = time.perf_counter(), time.process_time()
        scores[mode] = [evaluator.evaluate(a) for a in archs]
        rates[mode].append((len(archs) / (time.perf_counter() - tick), len(archs) / (time.process_time() - cpu_tick)))
    return {"archs": len(archs), "identical": scores["off"] == scores["on"], "load_average": load_average(),
            **{f"{mode}_archs_per_second": float(np.mean([r[0] for r in rates[mode]])) for mode in rates},
            **{f"{mode}_archs_per_cpu_second": float(np.mean([r[1] for r in rates[mode]])) for mode in rates}}


def run_strategy(spec: str, seed: int, space_name: str, args: argparse.Namespace, lookup: pd.DataFrame) -> np.ndarray:
    """(loss, gmacs) of the first ``budget`` archs the strategy asks, one ask(1)/tell at a time."""
    name, options = parse_strategy(spec)
    space = search_spaces.load(space_name)
    config = search_config(space_name, Path(args.work) / space_name / "surrogates", args, strategy=name,
                           strategy_options=options, seed=seed, budget=args.budget)
    strategy = search_strategy(config, space, lambda arch: float(lookup.at[arch.arch_id, "gmacs"]))
    points = []
    while len(points) < args.budget:
        archs = strategy.ask(1)
        if not archs:
            break
        row = lookup.loc[archs[0].arch_id]
        points.append((float(row["loss"]), float(row["gmacs"])))
        strategy.tell([Trial(archs[0], {"loss": points[-1][0], "gmacs": points[-1][1]}, "complete")])
    return np.array(points)


def grid_optimum(points: np.ndarray, reference: tuple[float, float], true_hv: float) -> float:
    """HV ratio of the best an eps-constrained search can pick with ``EPS_GRID``: for each eps, the cheapest arch of
    the whole table with ``loss <= eps`` (``points``: rows of (loss, GMACs))."""
    picks = [points[np.argmin(np.where(points[:, 0] <= eps, points[:, 1], np.inf))]
             for eps in EPS_GRID if (points[:, 0] <= eps).any()]
    return hypervolume(np.array(picks), reference) / true_hv if picks else 0.0


def hv_curve(points: np.ndarray, reference: tuple[float, float], true_hv: float, budget: int) -> np.ndarray:
    """Hypervolume ratio after each evaluation."""
    return np.array([hypervolume(points[:k], reference) / true_hv for k in range(1, budget + 1)])


def bootstrap_ci(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of the mean."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(BOOTSTRAP, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarise(spec: str, runs: list[np.ndarray], seconds: list[float], budget: int) -> dict[str, Any]:
    stack = np.stack(runs)
    reach = [int(np.argmax(c >= 0.95)) + 1 if (c >= 0.95).any() else None for c in runs]
    ranked = np.array([r if r is not None else np.inf for r in reach], dtype=float)
    row: dict[str, Any] = {"strategy": spec, "seeds": len(runs), "budget": budget,
                           "seconds_per_run": float(np.mean(seconds)),
                           "evals_to_95": reach, "runs_reaching_95": sum(r is not None for r in reach),
                           "evals_to_95_median": float(np.median(ranked)),
                           "evals_to_95_iqr": [float(np.percentile(ranked, 25)), float(np.percentile(ranked, 75))],
                           "curve_mean": stack.mean(0).tolist()}
    for k in CHECKPOINTS:
        if k <= budget:
            row[f"hv@{k}_mean"] = float(stack[:, k - 1].mean())
            row[f"hv@{k}_ci95"] = bootstrap_ci(stack[:, k - 1])
    return row


def space_markdown(space: str, result: dict[str, Any]) -> list[str]:
    budget = max(r["budget"] for r in result["strategies"])
    ks = [k for k in CHECKPOINTS if k <= budget]
    rate, cpu_rate = result.get("archs_per_second"), result.get("archs_per_cpu_second")
    lines = [f"## `{space}`", "",
             f"{result['archs']} archs, every one evaluated once -> true front of (loss, GMACs): "
             f"{result['true_front_size']} points. Evaluator throughput while building it: "
             f"{f'{rate:.2f} archs/s wall, {cpu_rate:.2f} archs per CPU second' if rate and cpu_rate else 'n/a'} "
             f"(one thread per process, over the {result.get('timed_archs')} archs timed by the building processes; "
             f"load average {result.get('load_average_before')} -> {result.get('load_average_after')}). "
             f"HV reference: loss {result['reference'][0]:.3f}, {result['reference'][1]:.3f} GMACs (1.1x the worst). "
             f"Cache key `{result['cache_key']}`."
             + (f" The best the eps grid allows (for each eps, the cheapest arch of the table under it): HV ratio "
                f"{result['grid_optimum_hv']:.3f}." if "grid_optimum_hv" in result else ""), ""]
    check = result.get("reuse_check")
    if check:
        lines += [f"Prefix memo, side by side in one process on {check['archs']} archs (half in index order, half "
                  f"random; off/on/off/on): without {check['off_archs_per_second']:.2f} archs/s wall "
                  f"({check['off_archs_per_cpu_second']:.2f} per CPU s), with {check['on_archs_per_second']:.2f} archs/s "
                  f"wall ({check['on_archs_per_cpu_second']:.2f} per CPU s), "
                  f"{check['on_archs_per_cpu_second'] / check['off_archs_per_cpu_second']:.1f}x in CPU time; scores "
                  f"{'identical bit for bit' if check['identical'] else 'DIFFERENT'} (load average "
                  f"{check['load_average']}).", ""]
    lines += [
             "| strategy | seeds | budget | " + " | ".join(f"HV @{k} (mean [95% CI])" for k in ks) +
             " | reach 95% | evals to 95%: median [IQR] | s per run |",
             "|---|---:|---:|" + "---:|" * len(ks) + "---:|---:|---:|"]
    for row in result["strategies"]:
        own = row["budget"]
        cells = [f"{row[f'hv@{k}_mean']:.3f} [{row[f'hv@{k}_ci95'][0]:.3f}, {row[f'hv@{k}_ci95'][1]:.3f}]"
                 if k <= own else "-" for k in ks]
        iqr = row["evals_to_95_iqr"]
        lines.append(f"| {row['strategy']} | {row['seeds']} | {own} | " + " | ".join(cells) +
                     f" | {row['runs_reaching_95']}/{row['seeds']} | {fmt_evals(row['evals_to_95_median'], own)} "
                     f"[{fmt_evals(iqr[0], own)}, {fmt_evals(iqr[1], own)}] | {row['seconds_per_run']:.1f} |")
    rows = {r["strategy"]: r for r in result["strategies"]}
    if "random" in rows:
        lines += ["", "Acceptance (issue 14): median evaluations to 95% <= half of random's, mean HV ratio at 50 >= 0.97, "
                  "mean HV ratio >= random's at every budget:", ""]
        lines += [f"- {acceptance(rows[name], rows['random'])}" for name in rows if name.startswith("bo")]
    return lines + [""]


def acceptance(row: dict[str, Any], random: dict[str, Any]) -> str:
    """The issue's three BO criteria for one row against random's, stated with the numbers (met or by how much not)."""
    name, median, random_median = row["strategy"], row["evals_to_95_median"], random["evals_to_95_median"]
    if np.isfinite(random_median):
        half, half_text = random_median / 2, f"{random_median / 2:g}"
    else:  # random never got there within its budget: half of its median is more than half its budget
        half, half_text = random["budget"] / 2, f">{random['budget'] / 2:g}"
    speed = (f"median {fmt_evals(median, row['budget'])} vs half of random's {fmt_evals(random_median, random['budget'])}"
             f" = {half_text}: " + ("met" if median <= half else
                                    "not met" + (f" (by {median - half:g} evaluations)" if np.isfinite(median) else "")))
    hv50 = row.get("hv@50_mean")
    quality = ("HV@50 n/a" if hv50 is None else
               f"HV@50 {hv50:.3f}: " + ("met" if hv50 >= 0.97 else f"not met (by {0.97 - hv50:.3f})"))
    ours, theirs = np.array(row["curve_mean"]), np.array(random["curve_mean"])
    k = min(len(ours), len(theirs))
    diff = ours[:k] - theirs[:k]
    every = (f">= random at {int((diff >= 0).sum())}/{k} budgets (min difference {diff.min():+.3f} at "
             f"{int(diff.argmin()) + 1}): " + ("met" if (diff >= 0).all() else "not met"))
    return f"`{name}` ({row['seeds']} seeds): {speed}; {quality}; {every}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(Path(__file__).parent / ".cache" / "search_efficiency"))
    parser.add_argument("--spaces", nargs="+", default=SPACES)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--evaluator", default="distillation", help="the expensive evaluator (registry name)")
    parser.add_argument("--evaluator-options", type=yaml.safe_load, default={},
                        help="its options, as YAML/JSON (e.g. '{prediction: x0}')")
    parser.add_argument("--validation", type=int, default=ValidationConfig().count, help="validation latents")
    parser.add_argument("--validation-batch", type=int, default=ValidationConfig().batch_size)
    parser.add_argument("--latent-size", type=int, default=None, help="validation latent side (default: the space's)")
    parser.add_argument("--strategies", nargs="+", default=DEFAULT_STRATEGIES,
                        help="name or name:key=value,... (names not available here are skipped with a note)")
    parser.add_argument("--exhaustive-only", action="store_true", help="only build (or resume) the cached tables")
    parser.add_argument("--shard", type=lambda v: tuple(int(x) for x in v.split("/")), default=(0, 1),
                        help="K/N: evaluate only every N-th arch from the K-th (parallel processes; with "
                             "--exhaustive-only; a later run without it assembles the table)")
    parser.add_argument("--reuse-check", type=int, default=20, metavar="N",
                        help="time the evaluator with and without its prefix memo on 2N archs (0: skip)")
    parser.add_argument("--merge", action="store_true", help="add these rows to the existing results file")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    command = " ".join([Path(sys.executable).name, *sys.argv])
    known = set(available_strategies())
    specs = [s for s in args.strategies if parse_strategy(s)[0] in known]
    skipped = [s for s in args.strategies if s not in specs]
    results: dict[str, Any] = {}
    for space_name in args.spaces:
        frame, info = exhaustive(space_name, args)
        if args.exhaustive_only:
            print(f"{space_name}: {len(frame)} archs, {info.get('archs_per_second')} archs/s", flush=True)
            continue
        lookup = frame.set_index("arch_id")
        points = frame[["loss", "gmacs"]].to_numpy(dtype=float)
        reference = (float(points[:, 0].max()) * 1.1, float(points[:, 1].max()) * 1.1)
        front = points[pareto_mask(points)]
        true_hv = hypervolume(front, reference)
        if args.reuse_check:
            info["reuse_check"] = reuse_check(space_name, args, args.reuse_check)
        rows = []
        for spec in specs:
            curves, seconds = [], []
            for seed in range(args.seeds):
                tick = time.perf_counter()
                asked = run_strategy(spec, seed, space_name, args, lookup)
                seconds.append(time.perf_counter() - tick)
                curves.append(hv_curve(asked, reference, true_hv, args.budget))
            rows.append(summarise(spec, curves, seconds, args.budget))
            print(f"{space_name} {spec}: HV@{args.budget} = {rows[-1][f'hv@{args.budget}_mean']:.3f}, "
                  f"evals to 95% median {rows[-1]['evals_to_95_median']}", flush=True)
        results[space_name] = {"archs": len(frame), "true_front_size": int(len(front)), "reference": reference,
                               "grid_optimum_hv": grid_optimum(points, reference, true_hv), **info, "strategies": rows}
    if args.exhaustive_only:
        return
    run = {"command": command, "python": sys.executable, "strategies_skipped": skipped, "seeds": args.seeds,
           "budget": args.budget, "eps_grid": EPS_GRID, "machine": machine(),
           "evaluator": {"name": args.evaluator, "options": args.evaluator_options, "validation": args.validation,
                         "validation_batch": args.validation_batch, "latent_size": args.latent_size}}
    Path(args.work).mkdir(parents=True, exist_ok=True)
    with open(Path(args.work) / "results.lock", "w") as lock:  # parallel --merge runs: one read-modify-write at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_merged(results, run, args)


def write_merged(results: dict[str, Any], run: dict[str, Any], args: argparse.Namespace) -> None:
    """Write this run's rows (added to the existing file's with ``--merge``) as the results json and md."""
    path = Path(args.out) / "search_efficiency.json"
    data: dict[str, Any] = {"runs": [], "spaces": {}}
    if args.merge and path.is_file() and "spaces" in json.loads(path.read_text()):  # not a file of the old layout
        data = json.loads(path.read_text())
    data["runs"].append({**run, "load_average_end": load_average()})
    for space_name, result in results.items():
        old = data["spaces"].get(space_name)
        if old and args.merge:
            if old["cache_key"] != result["cache_key"]:
                raise SystemExit(f"--merge: {space_name} was measured on another table; rerun without --merge")
            names = {r["strategy"] for r in result["strategies"]}
            result = {**old, **result, "strategies": [r for r in old["strategies"] if r["strategy"] not in names]
                      + result["strategies"]}
        data["spaces"][space_name] = result
    lines = ["How it was made (each command appends its rows; the tables are the union):", ""]
    lines += [f"- `{r['command']}` (skipped, not installed in that interpreter: {r['strategies_skipped'] or 'none'}; "
              f"load average at the end {r['load_average_end']})" for r in data["runs"]]
    ev = run["evaluator"]
    lines += ["", f"Evaluator `{ev['name']}` options {ev['options'] or '{}'} on {ev['validation']} validation latents "
              f"(batches of {ev['validation_batch']}, latent side {ev['latent_size'] or 'the space default'}); "
              f"strategies get ask(1)/tell; eps grid (for `bo`, `bo-prior`) {EPS_GRID}, "
              "fixed in advance. CI: percentile bootstrap 95% of the mean over seeds; evaluations to 95%: median and "
              "IQR over seeds (> budget: not reached).", ""]
    for space_name, result in data["spaces"].items():
        lines += space_markdown(space_name, result)
    write_results("search_efficiency", data, "\n".join(lines), args.out)


if __name__ == "__main__":
    main()
