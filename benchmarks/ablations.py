"""The ablations of ``experiments/`` answered: run each through ``tocsr-nas run``, then one figure and one answer each.

For every ablation YAML (``ABLATIONS``; the question each answers is the one in ``experiments/README.md``):

1. Run it with ``tocsr-nas run experiments/<file>.yaml --runs-dir RUNS --yes [overrides]`` in a subprocess with one
   torch thread (``OMP_NUM_THREADS=1``). Reruns skip finished stages, so rerunning this script only collects.
   A surrogates or search stage identical to one another experiment already finished (same stage hash: same
   config section and upstream outputs, e.g. search_only's surrogates, which six of the ablations start from) is
   copied from there first, so the runner finds it up to date instead of computing it again (within one sweep the
   runner shares such stages by itself).
2. Collect from the run folders: each sweep point's search trials (``analysis.frames``), its pick at the experiment's
   eps (``pick_trial``, the rule ``extract`` uses), the hypervolume of (loss, GMACs) on a reference point common to
   the sweep (``analysis.frames.hypervolume_curves``), the surrogates' median held-out error; for
   ``compare_strategies`` the runner's ``compare/`` ranking.
3. Draw one figure per question with ``analysis.figures`` (PNGs in ``benchmarks/results/ablations/``) and write
   ``benchmarks/results/ablations.{json,md}``: per question the figure, its command, a table and the answer.
4. Add the proxy-validity and BO comparisons from their committed result files (:mod:`_comparisons`).

The noise level comes from ``compare_strategies``: the same search (``bo``, search_only's settings) over several
search seeds gives the spread of the final hypervolume and of the pick's GMACs. A difference within that spread is
reported as "no measurable difference at this budget". (Surrogate-training seeds are not varied: their noise is not
in that figure.)

``SIZING`` holds the overrides this machine's budget needed (2 shared cores); ``--full`` runs the YAMLs as written.

Usage::

    python benchmarks/ablations.py --runs-dir /work/h3runs            # run (or resume) everything, then collect
    python benchmarks/ablations.py --runs-dir /work/h3runs --only eps --collect-only
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, write_results  # noqa: E402
from _comparisons import bo_section, proxy_section  # noqa: E402
from _comparisons import markdown as comparison_markdown  # noqa: E402

from analysis import figures  # noqa: E402
from analysis.frames import (  # noqa: E402
    complete,
    hypervolume_curves,
    load_runs,
    reference_point,
    strategy_ranking,
)
from analysis.tables import to_markdown  # noqa: E402
from tocsr_nas.atomic import write_json  # noqa: E402
from tocsr_nas.errors import ConfigError  # noqa: E402
from tocsr_nas.experiments import resolve, stage_folders  # noqa: E402
from tocsr_nas.experiments.manifest import config_hash, is_complete, read_manifest  # noqa: E402
from tocsr_nas.experiments.runner import stage_config, upstream_outputs  # noqa: E402
from tocsr_nas.search.results import pick_trial  # noqa: E402
from tocsr_nas.search.store import TRIALS_FILE  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIGURES = "ablations"  # the PNGs' folder inside the results folder
BO_SHOWN = ["bo", "bo-prior", "bo-prior:eps_order=loosest-first,initial_design=prior-front"]  # vs random
FRACTION = 0.95  # evaluations until a run reaches this share of the best final hypervolume of its comparison


@dataclasses.dataclass(frozen=True)
class Ablation:
    """One experiment YAML and the question it answers."""

    key: str
    file: str
    question: str


ABLATIONS = (
    Ablation("strategies", "compare_strategies.yaml",
             "Which strategy (random, evolution, NSGA-II, epsilon-constrained BO) reaches the loss-vs-GMACs front "
             "fastest, over several seeds at equal budgets?"),
    Ablation("eps", "ablation_eps.yaml",
             "How does the picked architecture trade loss for GMACs as the loss bound epsilon loosens?"),
    Ablation("granularity", "ablation_granularity.yaml",
             "One decision per stage and unit kind (tiny_ldm), or one per unit (tiny_ldm_per_unit)?"),
    Ablation("candidates", "ablation_candidates.yaml",
             "Is it the attention or the residual surrogates that buy the savings (attention-only, residual-only, "
             "both)?"),
    Ablation("distill_loss", "ablation_distill_loss.yaml",
             "Plain MSE or per-channel normalised MSE for feature distillation?"),
    Ablation("surrogate_budget", "ablation_surrogate_budget.yaml",
             "Does training the surrogate blocks longer change which architecture wins?"),
    Ablation("distill_input", "ablation_distill_input.yaml",
             "Should a candidate learn from the teacher's unit input or from the input an already-chosen student "
             "produces?"),
)
BY_KEY = {a.key: a for a in ABLATIONS}

# Overrides (key=value, as on the `tocsr-nas run` command line) that fit the whole set into this session's share of
# a 2-core machine at load ~5-10 (measured: search_only's surrogates, 100 steps at 32x32, took 21 min there; one
# search of 40 evaluations ~3 min). Every ablation but eps runs at REDUCED fidelity: 16x16 distillation and
# validation latents (costs are still counted at the space's 32x32) and 30 surrogate steps. `--full` drops them.
REDUCED = ["latent_size=16", "surrogates.steps=30"]
SIZING: dict[str, list[str]] = {
    "strategies": [*REDUCED, "sweep={search.strategy: [random, evolution, nsga2, bo], search.seed: [0, 1]}"],
    "granularity": REDUCED,
    "candidates": REDUCED,
    "distill_loss": REDUCED,
    "surrogate_budget": [*REDUCED, "sweep={surrogates.steps: [10, 30, 100, 300]}"],
    "distill_input": REDUCED,
}
ORDER = ("eps", "strategies", "candidates", "distill_loss", "granularity", "distill_input", "surrogate_budget")


def tocsr_command(ablation: Ablation, runs_dir: Path, overrides: list[str]) -> list[str]:
    return ["tocsr-nas", "run", f"experiments/{ablation.file}", "--runs-dir", str(runs_dir), "--yes", *overrides]


def shell_quote(args: list[str]) -> str:
    import shlex  # noqa: PLC0415

    return " ".join(shlex.quote(a) for a in args)


def short_label(suffix: str) -> str:
    """A sweep point's folder suffix as a label: ``search.eps=[0.15]`` -> ``eps=0.15``."""
    parts = []
    for part in suffix.split(","):
        key, _, value = part.partition("=")
        parts.append(f"{key.split('.')[-1]}={value.strip('[]')}")
    return ",".join(parts)


def resolved(ablation: Ablation, runs_dir: Path, overrides: list[str]) -> list[dict[str, Any]]:
    """Each sweep point of the experiment: its label, config and stage folders."""
    runs = resolve(ROOT / "experiments" / ablation.file, overrides)
    root = runs_dir / runs[0][1].name
    points = []
    for (suffix, config), (run_dir, folders) in zip(runs, stage_folders(runs, root)):
        label = short_label(suffix) if suffix else config.name
        points.append({"label": label, "suffix": suffix, "config": config, "run_dir": run_dir, "folders": folders,
                       "root": root})
    return points


REUSED_STAGES = ("surrogates", "search")  # the expensive ones; extract and report are cheap and name their run folder


def reuse_identical_stages(points: list[dict[str, Any]], runs_dir: Path) -> list[str]:
    """Copy finished stages with the same stage hash (config section and upstream outputs) from elsewhere under
    ``runs_dir`` into each point's stage folders that do not exist yet; returns what was copied (``donor -> folder``).

    The runner then finds them up to date, exactly as it shares a stage between the runs of one sweep."""
    donors: dict[str, Path] = {}
    for stage in REUSED_STAGES:
        for manifest_path in sorted(runs_dir.rglob(f"{stage}/stage.json")):
            manifest = read_manifest(manifest_path.parent)
            if manifest and manifest.get("status") == "complete" and manifest.get("stage") == stage:
                donors.setdefault(manifest["config_hash"], manifest_path.parent)
    copied = []
    for point in points:
        config, folders = point["config"], point["folders"]
        for stage in (s for s in REUSED_STAGES if s in config.stages):
            folder = folders[stage]
            key = {"config": stage_config(config, stage), "upstream": upstream_outputs(stage, folders)}
            donor = donors.get(config_hash(key))
            if folder.exists() or donor is None or not is_complete(donor, key):
                continue
            folder.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(donor, folder)
            copied.append(f"{donor} -> {folder}")
    return copied


def run_ablation(ablation: Ablation, runs_dir: Path, overrides: list[str], log_dir: Path) -> dict[str, Any]:
    """Run (or resume) one experiment in a subprocess with one thread; returns its wall time and load."""
    copied = reuse_identical_stages(resolved(ablation, runs_dir, overrides), runs_dir)
    command = tocsr_command(ablation, runs_dir, overrides)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{ablation.key}.log"
    print(f"[{time.strftime('%H:%M:%S')}] {shell_quote(command)}  (log: {log})", flush=True)
    start = time.perf_counter()
    with log.open("a") as stream:
        code = subprocess.run(command, cwd=ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT, check=False).returncode
    wall = time.perf_counter() - start
    print(f"[{time.strftime('%H:%M:%S')}]   exit {code} after {wall:.0f} s", flush=True)
    return {"command": shell_quote(command), "exit_code": code, "wall_s": round(wall, 1), "copied_stages": copied,
            "load_average_after": [round(v, 2) for v in os.getloadavg()]}


# ---------------------------------------------------------------------------------------------------- collecting


def search_folder(point: dict[str, Any]) -> Path | None:
    folder = point["folders"].get("search")
    return folder if folder is not None and (folder / TRIALS_FILE).is_file() else None


def stage_seconds(folder: Path | None) -> float | None:
    manifest = read_manifest(folder) if folder is not None else None
    return round(float(manifest["seconds"]), 1) if manifest and manifest.get("status") == "complete" else None


def surrogate_error(folder: Path | None) -> float | None:
    """Median held-out relative error of the trained (non-teacher, non-fixed) candidates of a surrogates stage."""
    table = folder / "relative_errors.csv" if folder is not None else None
    if table is None or not table.is_file():
        return None
    errors = pd.read_csv(table).query("status == 'done'").rel_error.dropna()
    return float(errors.median()) if len(errors) else None


def pick(folder: Path, eps: float) -> dict[str, Any] | None:
    """The trial ``extract`` would take at ``eps`` (None when none reaches it)."""
    try:
        row = pick_trial(folder, eps)
    except ConfigError:
        return None
    return {k: (row[k].item() if isinstance(row[k], np.generic) else row[k])
            for k in ("trial_id", "loss", "gmacs", "params_m", "macs_ratio", "params_ratio", "arch") if k in row}


def collect_points(ablation: Ablation, runs_dir: Path, overrides: list[str]) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Per sweep point: the pick, stage times, surrogate error; and all their trials in one frame (column ``variant``)."""
    rows, frames = [], []
    for point in resolved(ablation, runs_dir, overrides):
        config, folder = point["config"], search_folder(point)
        eps = config.extract.eps or config.search.eps[0]
        row = {"variant": point["label"], "suffix": point["suffix"], "eps": eps, "finished": False,
               "surrogates_s": stage_seconds(point["folders"].get("surrogates")),
               "search_s": stage_seconds(point["folders"].get("search")),
               "surrogate_median_error": surrogate_error(point["folders"].get("surrogates")),
               "search_folder": str(folder) if folder else None}
        try:
            trials = load_runs([folder]) if folder is not None else None
        except ConfigError:  # a search that has not stored a trial yet
            trials = None
        if trials is not None:
            row["finished"] = read_manifest(folder) is not None and read_manifest(folder).get("status") == "complete"
            row["evaluations"] = int(trials.evaluation.max())
            row["pick"] = pick(folder, eps)
            losses = complete(trials).loss
            row["best_loss"] = float(losses.min()) if len(losses) else None
            frames.append(trials.assign(variant=point["label"], run=point["label"], strategy=point["label"]))
        rows.append(row)
    return rows, (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame())


def hypervolumes(trials: pd.DataFrame) -> tuple[pd.DataFrame, tuple[float, ...]]:
    """Per variant: final hypervolume and evaluations to 95% of the best, on one reference point for all."""
    reference = reference_point(trials)
    curves = hypervolume_curves(trials, reference)
    ranking = strategy_ranking(curves, "hypervolume", FRACTION)
    return ranking.rename(columns={"strategy": "variant"}), reference


def noise_level(points: list[dict[str, Any]], trials: pd.DataFrame) -> dict[str, Any] | None:
    """Seed noise of the default search (bo): relative spread of final hypervolume and of the pick's GMACs."""
    bo = trials[trials.variant.map(strategy_of) == "bo"] if len(trials) else trials
    if bo.empty or bo.variant.nunique() < 2:
        return None
    curves = hypervolume_curves(bo, reference_point(bo))
    finals = curves.sort_values("evaluation").groupby("run").hypervolume.last()
    picks = [p["pick"]["gmacs"] for p in points if strategy_of(p["variant"]) == "bo" and p.get("pick")]
    return {"seeds": int(bo.variant.nunique()), "hv_cv": float(finals.std(ddof=1) / finals.mean()),
            "hv_rel_range": float((finals.max() - finals.min()) / finals.mean()),
            "pick_gmacs": [float(g) for g in picks],
            "pick_gmacs_rel_range": float((max(picks) - min(picks)) / np.mean(picks)) if len(picks) > 1 else None}


def pick_table(points: list[dict[str, Any]], ranking: pd.DataFrame | None) -> pd.DataFrame:
    rows = []
    for p in points:
        chosen = p.get("pick") or {}
        row = {"variant": p["variant"], "evals": p.get("evaluations"), "pick trial": chosen.get("trial_id"),
               "pick loss": chosen.get("loss"),
               "pick GMACs": chosen.get("gmacs"), "pick params (M)": chosen.get("params_m"),
               "x fewer GMACs": chosen.get("macs_ratio"), "x fewer params": chosen.get("params_ratio")}
        if ranking is not None and p["variant"] in set(ranking.variant):
            hit = ranking[ranking.variant == p["variant"]].iloc[0]
            row["final HV"] = hit.final_mean
            row[f"evals to {FRACTION:.0%} HV"] = hit.evals_to_target
        if p.get("surrogate_median_error") is not None:
            row["surrogate median error"] = p["surrogate_median_error"]
        row["search s"] = p.get("search_s")
        rows.append(row)
    return pd.DataFrame(rows)


def strategy_of(variant: str) -> str:
    """``strategy=bo,seed=1`` -> ``bo``."""
    return variant.split(",")[0].split("=")[-1]


def draw(ablation: Ablation, points: list[dict[str, Any]], trials: pd.DataFrame, out: Path) -> Path | None:
    """The question's figure: fronts of every variant with its pick marked (strategies: hypervolume curves)."""
    if trials.empty:
        return None
    path = out / f"{ablation.key}.png"
    if ablation.key == "strategies":
        runs = [point for point in points if point.get("pick") is not None or point.get("evaluations")]
        frame = trials.assign(strategy=trials.variant.map(strategy_of), run=trials.variant)
        curves = hypervolume_curves(frame, reference_point(frame))
        figures.hypervolume_plot(curves, path, band="minmax",
                                 title=f"hypervolume vs evaluations, {len(runs)} searches (mean, min-max over seeds)")
        return path
    anchors = {f"pick {p['variant']}": (p["pick"]["gmacs"], p["pick"]["loss"]) for p in points if p.get("pick")}
    figures.pareto_plot(trials, path, by="variant", anchors=anchors,
                        title=f"{ablation.file}: loss vs GMACs per variant (pick at eps marked)")
    return path


# ---------------------------------------------------------------------------------------------------- answers


def differs(a: float, b: float, noise: float | None) -> bool | None:
    """Whether two values differ, relative to the larger, by more than the relative seed spread (None: no estimate)."""
    if noise is None:
        return None
    return abs(a - b) / max(abs(a), abs(b), 1e-12) > noise


def fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}g}"


def noise_sentence(noise: dict[str, Any] | None) -> str:
    if not noise:
        return "No seed-noise estimate (compare_strategies has not finished two bo seeds)."
    gmacs = noise["pick_gmacs_rel_range"]
    return (f"Noise level: the same search (bo) over {noise['seeds']} search seeds (compare_strategies) differs by "
            f"{noise['hv_rel_range']:.1%} in final HV and {fmt(gmacs * 100 if gmacs is not None else None)}% in the "
            f"pick's GMACs; a difference under that is not measurable here (two seeds give a rough, likely low, "
            f"estimate; surrogate-training seeds are not varied).")


def pair_sentence(a: dict[str, Any], b: dict[str, Any], hv: dict[str, float], noise: dict[str, Any] | None) -> str:
    """Two variants' picks and final hypervolumes, and whether they differ beyond the seed noise."""
    pa, pb = a["pick"], b["pick"]
    hv_a, hv_b = hv.get(a["variant"]), hv.get(b["variant"])
    if pa is None or pb is None:
        none = a if pa is None else b
        return (f"{a['variant']} vs {b['variant']}: {none['variant']} has no trial with loss <= eps {none['eps']:g} "
                f"(best loss {fmt(none.get('best_loss'), 4)}), so extract refuses it; final HV {fmt(hv_a, 4)} vs "
                f"{fmt(hv_b, 4)}")
    gm = differs(pa["gmacs"], pb["gmacs"], noise["pick_gmacs_rel_range"] if noise else None)
    hvd = differs(hv_a, hv_b, noise["hv_rel_range"] if noise else None) if None not in (hv_a, hv_b) else None
    verdict = "" if gm is None and hvd is None else (
        " -> " + ", ".join(f"{name} {'differs measurably' if flag else 'within seed noise'}"
                          for name, flag in (("pick GMACs", gm), ("HV", hvd)) if flag is not None))
    return (f"{a['variant']} vs {b['variant']}: picks {'identical' if pa['arch'] == pb['arch'] else 'differ'} "
            f"({pa['gmacs']:.3g} vs {pb['gmacs']:.3g} GMACs, loss {pa['loss']:.3f} vs {pb['loss']:.3f}), final HV "
            f"{fmt(hv_a, 4)} vs {fmt(hv_b, 4)}{verdict}")


def budget(points: list[dict[str, Any]], strategy: str) -> int | None:
    """The evaluations a strategy's runs made (their maximum)."""
    return max((p.get("evaluations") or 0 for p in points if strategy_of(p["variant"]) == strategy), default=None)


def answer(ablation: Ablation, points: list[dict[str, Any]], ranking: pd.DataFrame | None,
           noise: dict[str, Any] | None) -> str:
    """The answer the numbers give, in a few sentences."""
    done = [p for p in points if p.get("pick") and p["finished"]]
    missing = [p["variant"] for p in points if not p["finished"]]
    tail = f" Not finished: {', '.join(missing)}." if missing else ""
    if ablation.key == "strategies":
        if ranking is None or not done:
            return "Not answered: no search finished." + tail
        parts = [f"{r.variant} {r.final_mean:.4g} ± {r.final_std:.2g} (" + (
                     f"{FRACTION:.0%} of the best run's final HV after {r.evals_to_target:.3g} evaluations in "
                     f"{int(r.reached)}/{int(r.runs)} runs" if r.reached else
                     f"no run reached {FRACTION:.0%} of the best run's final HV in {budget(points, r.variant)} "
                     "evaluations") + ")" for r in ranking.itertuples()]
        best, second = ranking.iloc[0], ranking.iloc[1] if len(ranking) > 1 else ranking.iloc[0]
        separated = best.final_mean - best.final_std > second.final_mean + second.final_std
        return (f"Final HV (mean ± std over seeds): {'; '.join(parts)}. "
                + (f"{best.variant} leads, its band clear of the runner-up {second.variant}."
                   if separated else f"{best.variant} leads on the mean, but within one std of {second.variant}: "
                                     "no measurable winner at this budget and seed count.") + tail)
    if ablation.key == "eps":
        if not done:
            return "Not answered: no search finished." + tail
        rows = sorted(done, key=lambda p: p["eps"])
        steps = "; ".join(f"eps {p['eps']:g}: {p['pick']['gmacs']:.3g} GMACs ({p['pick']['macs_ratio']:.2f}x fewer "
                          f"than the teacher), {p['pick']['params_ratio']:.2f}x fewer params, loss {p['pick']['loss']:.3f}"
                          for p in rows)
        gm = [p["pick"]["gmacs"] for p in rows]
        monotone = all(b <= a for a, b in zip(gm, gm[1:]))
        return (f"The pick per eps: {steps}. "
                + ("The pick's GMACs fall monotonically as eps loosens while its loss rises toward the bound: eps "
                   "trades loss for GMACs along the front." if monotone else
                   "The pick's GMACs do not fall monotonically with eps: each eps is its own search, and a looser "
                   "bound's search did not find the cheaper arch a tighter one found (search noise).")
                + " (Each eps is a separate bo search at search_only's full settings; no seed repeats.)" + tail)
    searched = [p for p in points if p["finished"]]
    if len(searched) < 2:
        return "Not answered: fewer than two of its searches finished." + tail
    hv = {} if ranking is None else dict(zip(ranking.variant, ranking.final_mean))
    text = "; ".join(pair_sentence(a, b, hv, noise) for a, b in zip(searched, searched[1:])) + ". "
    if ablation.key == "candidates":
        both = next((p for p in done if p["variant"] == "space=tiny_ldm"), None)
        if both is not None:
            teacher = both["pick"]["gmacs"] * both["pick"]["macs_ratio"]
            saved = {p["variant"]: teacher - p["pick"]["gmacs"] for p in done}
            share = ", ".join(f"{v} {saved[v] / saved[both['variant']]:.0%}" for v in saved if v != both["variant"])
            singles = sorted((p for p in done if p is not both), key=lambda p: saved[p["variant"]], reverse=True)
            close = len(singles) == 2 and differs(singles[0]["pick"]["gmacs"], singles[1]["pick"]["gmacs"],
                                                  noise["pick_gmacs_rel_range"] if noise else None) is False
            kind = singles[0]["variant"].split("_")[-2]
            text += (f"Share of the full space's GMACs saving (teacher {teacher:.3g} GMACs) that each one-kind space "
                     f"reaches at eps {both['eps']:g}: {share}: "
                     + ("the two one-kind spaces' picks are within seed noise of each other, so neither kind alone buys "
                        "the savings; together they save more than either." if close else
                        f"the {kind} surrogates buy most of it.") + " ")
    if ablation.key == "surrogate_budget":
        errors = ", ".join(f"{p['variant']} {fmt(p['surrogate_median_error'])}" for p in done)
        text += f"Median held-out relative error of the trained surrogates: {errors}. "
    if not done:
        return text + noise_sentence(noise) + tail
    best = max(done, key=lambda p: (p["pick"]["macs_ratio"], -p["pick"]["loss"]))
    return (text + f"Cheapest pick under eps {best['eps']:g}: {best['variant']} ({best['pick']['macs_ratio']:.2f}x fewer "
            f"GMACs, {best['pick']['params_ratio']:.2f}x fewer parameters than the teacher). {noise_sentence(noise)}"
            + tail)


# ---------------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where the run folders go")
    parser.add_argument("--only", nargs="+", choices=list(BY_KEY), help="ablations to run (default: all)")
    parser.add_argument("--collect-only", action="store_true", help="do not run anything; collect what exists")
    parser.add_argument("--full", action="store_true", help="run the YAMLs as written (no SIZING overrides)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()
    runs_dir = args.runs_dir.resolve()
    selected = [BY_KEY[k] for k in (args.only or ORDER)]
    overrides = {a.key: [] if args.full else SIZING.get(a.key, []) for a in ABLATIONS}

    record = runs_dir / "ablations_runs.json"  # each experiment's last run: command, exit code, wall time, copies
    runs_info = json.loads(record.read_text()) if record.is_file() else {}
    if not args.collect_only:
        for ablation in selected:
            runs_info[ablation.key] = run_ablation(ablation, runs_dir, overrides[ablation.key], runs_dir / "logs")
            write_json(record, runs_info)

    results: dict[str, Any] = {"runs_dir": str(runs_dir), "ablations": {}}
    collected = {a.key: collect_points(a, runs_dir, overrides[a.key]) for a in ABLATIONS}
    noise = noise_level(*collected["strategies"])
    results["noise"] = noise
    sections = [
        "Every ablation YAML of `experiments/` run through `tocsr-nas run` (one torch thread), then collected by "
        "`benchmarks/ablations.py`; each figure comes out again from the command below it (a rerun skips the finished "
        "stages and only redraws). Picks are `pick_trial` at the experiment's eps (what `extract` takes); hypervolume "
        "(HV) is of (relative distillation loss, GMACs) with one reference point per question (worst of its runs + "
        "10%), so HVs compare within a question only. Loss is the `distillation` evaluator's (relative to the "
        "all-identity arch) measured with each run's own surrogates. `bo` starts from a seeded random design (its "
        "first 10 evaluations), shared by every seed-0 search of one space: when several tables show the same pick "
        "trial (e.g. 8), no later evaluation of those searches beat that design point under eps.", ""]
    if any(overrides.values()):
        sections += ["Sizing (this machine: 2 cores shared by five sessions, load 5-10; search_only's surrogates, 100 "
                     "steps at 32x32 latents, took 21 min, each 40-evaluation bo search 4-6 min): `ablation_eps` runs "
                     "as written; every other experiment runs at reduced fidelity, "
                     + " ".join(f"`{o}`" for o in REDUCED) + " (distillation and validation latents 16x16, costs still "
                     "counted at 32x32; 30 surrogate steps), with these overrides: "
                     + "; ".join(f"`{a.file}`: {' '.join(f'`{o}`' for o in overrides[a.key])}"
                                 for a in ABLATIONS if overrides[a.key]) + ". `--full` runs the YAMLs as written.", ""]
    ran = [{"experiment": k, "exit": v.get("exit_code"), "wall (s)": v.get("wall_s"), "reused stages": len(v.get("copied_stages", [])),
            "load after": " ".join(map(str, v.get("load_average_after", []))), "note": v.get("note", "")}
           for k, v in runs_info.items()]
    if ran:
        outside = [a.key for a in ABLATIONS if a.key not in runs_info]
        sections += ["Last run of each experiment by this script" + (
                     f" ({', '.join(outside)}: run by `tocsr-nas run` directly; stage times in the tables)" if outside
                     else "") + ":", "", to_markdown(pd.DataFrame(ran)), ""]
    for ablation in ABLATIONS:
        points, trials = collected[ablation.key]
        ranking, reference = (None, None)
        if ablation.key == "strategies" and len(trials):
            frame = trials.assign(strategy=trials.variant.map(strategy_of))
            ranking = strategy_ranking(hypervolume_curves(frame, reference_point(frame)), "hypervolume", FRACTION)
            ranking = ranking.rename(columns={"strategy": "variant"})
        elif len(complete(trials)):
            ranking, reference = hypervolumes(trials)
        figure = draw(ablation, points, trials, args.out / FIGURES)
        command = f"python benchmarks/ablations.py --runs-dir {runs_dir} --only {ablation.key}"
        text = answer(ablation, points, ranking, noise) if any(p.get("pick") or p.get("evaluations") for p in points) \
            else "Not run."
        missing = [p["variant"] for p in points if not p["finished"]]
        table = pick_table(points, ranking if ablation.key != "strategies" else None)
        results["ablations"][ablation.key] = {
            "file": ablation.file, "question": ablation.question, "overrides": overrides[ablation.key],
            "command": command, "run": runs_info.get(ablation.key), "figure": f"{FIGURES}/{figure.name}" if figure else None,
            "reference_point": reference, "answer": text, "unfinished": missing,
            "points": [{k: v for k, v in p.items() if k != "config"} for p in points],
            "ranking": ranking.to_dict(orient="records") if ranking is not None else None}
        sections += [f"## {ablation.question}", "", f"`experiments/{ablation.file}`"
                     + (f" with {' '.join(f'`{o}`' for o in overrides[ablation.key])}" if overrides[ablation.key] else "")
                     + ".", ""]
        if figure:
            sections += [f"![{ablation.key}]({FIGURES}/{figure.name})", ""]
        sections += [f"Command: `{command}`", ""]
        if ablation.key == "strategies" and ranking is not None:
            sections += [to_markdown(ranking), ""]
        sections += [to_markdown(table), "", f"**Answer.** {text}", ""]
        if missing:
            sections += [f"Unfinished runs: {', '.join(missing)}.", ""]
    comparisons = [proxy_section(args.out, args.out / FIGURES), bo_section(args.out, args.out / FIGURES, BO_SHOWN)]
    for section in filter(None, comparisons):
        results.setdefault("comparisons", []).append(dataclasses.asdict(section))
        sections += comparison_markdown(section)
    results["machine"] = machine()
    json_path, md_path = write_results("ablations", results, "\n".join(sections), args.out)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
