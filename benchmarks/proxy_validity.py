"""Proxy validity: does a better search proxy give a better one-step SR model?

For >= 12 archs of the default space spread from the teacher to very small (the teacher, the all-identity arch,
a search's Pareto set if given, and random archs of the space at evenly spaced GMACs), each arch's compact UNet
(with its distilled surrogates) goes through the shipped recipes ``experiments/recipes/sr_adapt.yaml`` and
``sr_onestep.yaml`` with ONE fixed, shrunk budget, and the one-step model is scored by PSNR-Y on the given HR
folders (CSet5 + CSet14; standard protocol of :mod:`tocsr_nas.sr.evaluate`). Then every proxy (the distillation
evaluator's variants, ``generation``, GMACs alone) is computed on the same archs and correlated with that PSNR
(Kendall tau and Spearman rho, scipy.stats). The noise floor is the PSNR difference when two archs are retrained
with another seed.

Two steps (``train`` appends one JSON line per finished arch to ``WORK/sr_runs.jsonl``, so a crash loses nothing
and a rerun skips finished archs)::

    python benchmarks/proxy_validity.py train --surrogates RUN/surrogates --work WORK \\
        --data ../shared/data/sr/CSet5 --data ../shared/data/sr/CSet14 [--search RUN/search]
    python benchmarks/proxy_validity.py score --surrogates RUN/surrogates --work WORK
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "experiments" / "recipes"
RUNS_FILE = "sr_runs.jsonl"
PROXIES_FILE = "proxies.json"
log = logging.getLogger("proxy_validity")


def select_archs(space: Any, table: Any, count: int, search: Path | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` archs from the teacher to the all-identity arch: those two, the search's Pareto set (if given),
    then archs of a seeded random sample of the space nearest to evenly spaced GMACs (distinct, most GMACs first)."""
    from evaluators.distillation import identity_arch
    from tocsr_nas.search.results import pareto_trials

    chosen = {str(a): a for a in (space.teacher_arch(), identity_arch(space))}
    for text in (pareto_trials(search).arch if search is not None else []):
        if len(chosen) < count:
            chosen.setdefault(str(space.parse(text)), space.parse(text))
    rng = np.random.default_rng(seed)
    sample = {str(a): a for a in (space.sample(rng) for _ in range(4000))}
    gmacs = {text: table.cost(a).gmacs for text, a in sample.items()}
    for target in np.linspace(min(gmacs.values()), max(gmacs.values()), count)[::-1]:
        if len(chosen) >= count:
            break
        text = min((t for t in sample if t not in chosen), key=lambda t: abs(gmacs[t] - target))
        chosen[text] = sample[text]
    archs = [{"arch": text, "arch_id": arch.arch_id, "gmacs": table.cost(arch).gmacs,
              "params_m": table.cost(arch).params / 1e6} for text, arch in chosen.items()]
    return sorted(archs, key=lambda a: -a["gmacs"])


def recipe(name: str, **overrides: Any) -> dict[str, Any]:
    """A shipped SR recipe as a mapping with the benchmark's overrides merged in (one level deep)."""
    from tocsr_nas.config_io import read_mapping

    data = read_mapping(RECIPES / name)
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) and isinstance(data.get(key), dict) \
            else value
    return data


def train_one(arch: dict[str, Any], args: argparse.Namespace, seed: int, supernet: Any) -> dict[str, Any]:
    """Extract (from ``supernet``, which holds the trained surrogates), SR-adapt, one-step distil and evaluate one
    arch; the result row."""
    import torch

    from tocsr_nas.config_io import validate
    from tocsr_nas.data.images import list_image_files
    from tocsr_nas.sr.evaluate import evaluate_files, model_method
    from tocsr_nas.sr.model import load_sr_model
    from tocsr_nas.sr.train import SRAdaptRecipe, SROneStepRecipe, run_sr_adapt, run_sr_onestep

    folder = args.work / f"{arch['arch_id']}_s{seed}"
    start = time.perf_counter()
    compact = folder / "compact"
    if not (compact / "config.json").is_file():
        with torch.no_grad():
            supernet.extract(supernet.space.parse(arch["arch"])).save_pretrained(compact)
    loop = {"steps": args.adapt_steps, "batch_size": args.batch_size, "seed": seed, "num_threads": args.threads,
            "checkpoint_every": max(args.adapt_steps // 2, 1), "log_every": 25, "warmup_steps": 10}
    adapt_data = recipe(args.adapt_recipe, loop=loop, data={"crop_size": args.crop})
    adapt_data["backbone"] = {"teacher": adapt_data["backbone"]["teacher"], "compact": str(compact)}
    adapt = validate(SRAdaptRecipe, adapt_data)
    adapted = run_sr_adapt(adapt, folder / "sr_adapt")
    loop = {**loop, "steps": args.onestep_steps, "seed": seed + 1,
            "checkpoint_every": max(args.onestep_steps // 2, 1)}
    onestep = validate(SROneStepRecipe, recipe(args.onestep_recipe, init=adapted["model"], loop=loop,
                                               data={"crop_size": args.crop}))
    distilled = run_sr_onestep(onestep, folder / "sr_onestep")
    trained_s = time.perf_counter() - start
    model = load_sr_model(distilled["model"], kind="sr-onestep")
    torch.set_num_threads(args.threads)
    rows = []
    for data in args.data:
        rows += evaluate_files({"onestep": model_method(model)}, list_image_files(data), model.scale,
                               dataset=data.name, max_side=args.max_side)
    per_set = {data.name: float(np.mean([r["psnr_y"] for r in rows if r["dataset"] == data.name]))
               for data in args.data}
    return {**arch, "seed": seed, "psnr_y": float(np.mean([r["psnr_y"] for r in rows])),
            "ssim_y": float(np.mean([r["ssim_y"] for r in rows])), "psnr_y_by_set": per_set, "images": len(rows),
            "adapt_loss": adapted["final"].get("loss"), "onestep_loss": distilled["final"].get("loss"),
            "train_s": trained_s, "total_s": time.perf_counter() - start}


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    import search_spaces
    from tocsr_nas.search.components import COST_TABLE_FILE, cached_cost_table, trained_supernet
    from tocsr_nas.teachers import load_teacher

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    space = search_spaces.load(args.space)
    teacher = load_teacher(space.teacher)
    table, built = cached_cost_table(teacher, space, args.work)
    if built:
        table.save(args.work / COST_TABLE_FILE)
    supernet = trained_supernet(teacher, space, args.surrogates)
    archs = select_archs(space, table, args.archs, args.search, args.seed)
    (args.work / "archs.json").write_text(json.dumps(archs, indent=1))
    runs_path = args.work / RUNS_FILE
    done = {(r["arch_id"], r["seed"]) for r in read_runs(args.work)}
    noise = [archs[i] for i in np.linspace(0, len(archs) - 1, args.noise_archs + 2).astype(int)[1:-1]]
    jobs = [(a, args.seed) for a in archs] + [(a, args.seed + 10) for a in noise]
    shard, shards = (int(x) for x in args.shard.split("/"))
    settings = {k: v for k, v in vars(args).items() if k not in {"func", "shard"}}
    for arch, seed in jobs[shard::shards]:
        if (arch["arch_id"], seed) in done:
            continue
        log.info("arch %s (%.3f GMACs) seed %d", arch["arch"], arch["gmacs"], seed)
        row = train_one(arch, args, seed, supernet)
        row["settings"] = json.loads(json.dumps(settings, default=str))
        with runs_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        log.info("-> PSNR-Y %.3f dB (%.0f s)", row["psnr_y"], row["total_s"])
    return 0


def read_runs(work: Path) -> list[dict[str, Any]]:
    path = work / RUNS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


PROXIES: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    # (evaluator, options, {proxy name: metric}); every proxy metric is lower-is-better except the "-" ones
    ("distillation", {}, {"distill eps uniform, /identity (default)": "loss", "distill eps uniform (original)": "raw_loss"}),
    ("distillation", {"timesteps": "focused", "center": 250, "width": 100}, {"distill eps focused t=250+-100": "loss"}),
    ("distillation", {"timesteps": [0, 250]}, {"distill eps t in [0, 250]": "loss"}),
    ("distillation", {"prediction": "x0", "timesteps": [0, 250]}, {"distill x0 t in [0, 250]": "loss"}),
    ("distillation", {"prediction": "v", "timesteps": [0, 250]}, {"distill v t in [0, 250]": "loss"}),
    ("distillation", {"snr_weighting": "min-snr", "snr_gamma": 5.0}, {"distill eps uniform min-SNR-5": "loss"}),
    ("distillation", {"prediction": "x0"}, {"distill x0 uniform": "loss"}),
    ("generation", {}, {"generation latent error": "loss", "generation -PSNR": "-psnr", "generation -SSIM": "-ssim",
                        "generation KID": "kid"}),
]


def bootstrap_taus(scores: dict[str, np.ndarray], psnr: np.ndarray, reps: int = 1000,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Kendall tau of every score vs ``psnr`` on ``reps`` bootstrap resamples of the archs (the same resamples for
    every score, so two scores' taus compare pairwise); NaN where a resample leaves a score constant."""
    import scipy.stats  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(psnr), size=(reps, len(psnr)))
    return {name: np.array([scipy.stats.kendalltau(values[i], psnr[i])[0] for i in picks])
            for name, values in scores.items()}


def resolvable_tau(score: np.ndarray, psnr: np.ndarray, margin: float) -> tuple[float, int]:
    """Kendall's tau-a over the arch pairs whose PSNR differs by more than ``margin`` (the seed noise): (concordant -
    discordant) / pairs (a tied score counts as neither), and the number of such pairs."""
    i, j = np.triu_indices(len(psnr), k=1)
    keep = np.abs(psnr[i] - psnr[j]) > margin
    signs = np.sign(score[i] - score[j])[keep] * np.sign(psnr[i] - psnr[j])[keep]
    return (float(signs.mean()) if keep.any() else float("nan")), int(keep.sum())


def metric_value(metrics: dict[str, float], metric: str) -> float:
    """A proxy value (lower is better): the metric, or its negation for a ``-name``."""
    return -metrics[metric[1:]] if metric.startswith("-") else metrics[metric]


def reference_psnr(work: Path, run: dict[str, Any]) -> dict[str, float]:
    """PSNR-Y of the ``bicubic`` and ``vae-recon`` (the VAE's own ceiling) references on the images and crops
    ``run`` was scored on (its one-step model gives the VAE and scale)."""
    import torch

    from tocsr_nas.data.images import list_image_files
    from tocsr_nas.sr.evaluate import evaluate_files, reference_methods
    from tocsr_nas.sr.model import load_sr_model

    model = load_sr_model(work / f"{run['arch_id']}_s{run['seed']}" / "sr_onestep" / "model", kind="sr-onestep")
    rows = []
    for data in map(Path, run["settings"]["data"]):
        with torch.no_grad():
            rows += evaluate_files(reference_methods(model.scale, model.vae), list_image_files(data), model.scale,
                                   dataset=data.name, max_side=run["settings"].get("max_side"))
    return {m: float(np.mean([r["psnr_y"] for r in rows if r["method"] == m])) for m in ("bicubic", "vae-recon")}


def cmd_score(args: argparse.Namespace) -> int:
    """Compute every proxy on the trained archs (cached in WORK/proxies.json) and correlate with the PSNR."""
    import scipy.stats
    import torch

    import search_spaces
    from evaluators import make_evaluator
    from tocsr_nas.search.components import evaluation_context
    from tocsr_nas.search.config import SearchConfig
    from tocsr_nas.teachers import load_teacher

    torch.set_num_threads(args.threads)
    runs = read_runs(args.work)
    base = [r for r in runs if r["seed"] == args.seed]
    if len(base) < 3:
        raise SystemExit(f"only {len(base)} finished archs in {args.work / RUNS_FILE}: nothing to correlate yet")
    config = SearchConfig(space=args.space, surrogates=str(args.surrogates) if args.surrogates else None,
                          validation={"count": args.validation_count, "batch_size": 8}, device="cpu")
    space = search_spaces.load(config.space)
    cache_path = args.work / PROXIES_FILE
    cache: dict[str, dict[str, float]] = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    context = evaluation_context(config, args.work, space, load_teacher(space.teacher))
    proxies = PROXIES[:args.proxies]
    for evaluator, options, names in proxies:
        missing = [r for r in base if any(r["arch_id"] not in cache.get(name, {}) for name in names)]
        if not missing:
            continue
        built = make_evaluator(evaluator, context=context, **options)
        start = time.perf_counter()
        for r in missing:
            metrics = built.evaluate(space.parse(r["arch"]))
            for name, metric in names.items():
                cache.setdefault(name, {})[r["arch_id"]] = float(metric_value(metrics, metric))
        for name in names:
            cache.setdefault("_seconds_per_arch", {})[name] = (time.perf_counter() - start) / len(missing)
        cache_path.write_text(json.dumps(cache, indent=1))
        log.info("%s %s: %.2f s/arch", evaluator, options, (time.perf_counter() - start) / len(missing))
    noise = []
    for r in runs:
        if r["seed"] != args.seed:
            ref = next((b for b in base if b["arch_id"] == r["arch_id"]), None)
            if ref is not None:
                noise.append({"arch": r["arch"], "psnr_seed_a": ref["psnr_y"], "psnr_seed_b": r["psnr_y"],
                              "abs_diff": abs(ref["psnr_y"] - r["psnr_y"])})
    psnr = np.array([r["psnr_y"] for r in base])
    margin = max((n["abs_diff"] for n in noise), default=0.0)
    names = [*(n for _, _, names in proxies for n in names), "GMACs"]
    # every proxy is lower-is-better (GMACs: fewer MACs predicts lower PSNR, so its sign is flipped)
    scores = {name: np.array([r["gmacs"] if name == "GMACs" else -cache[name][r["arch_id"]] for r in base])
              for name in names}
    boot = bootstrap_taus(scores, psnr)
    table = []
    for name in names:
        tau, tau_p = scipy.stats.kendalltau(scores[name], psnr)
        rho, rho_p = scipy.stats.spearmanr(scores[name], psnr)
        low, high = np.nanpercentile(boot[name], [5, 95])
        table.append({"proxy": name, "kendall_tau": float(tau), "tau_p": float(tau_p), "spearman_rho": float(rho),
                      "rho_p": float(rho_p), "tau_ci90": [float(low), float(high)],
                      "p_beats_gmacs": float(np.nanmean(boot[name] > boot["GMACs"])),
                      **dict(zip(("tau_resolvable", "resolvable_pairs"), resolvable_tau(scores[name], psnr, margin))),
                      "s_per_arch": cache.get("_seconds_per_arch", {}).get(name)})
    data = {"command": " ".join(["python", *sys.argv]), "surrogates": str(args.surrogates), "runs": runs,
            "proxies": {k: v for k, v in cache.items()}, "correlations": table, "noise_floor": noise,
            "references": reference_psnr(args.work, base[0]), "load_average": os.getloadavg(),
            "settings": base[0].get("settings")}
    compare = json.loads(args.compare.read_text()) if args.compare else None
    write_results(args.name, data, markdown(data, base, compare), args.out)
    return 0


def resolvable_pairs(data: dict[str, Any]) -> str:
    """The number of arch pairs the resolvable tau is computed on (as text; '-' for results without it)."""
    counts = {c.get("resolvable_pairs") for c in data["correlations"]}
    return str(counts.pop()) if len(counts) == 1 and None not in counts else "-"


def budget(settings: dict[str, Any]) -> str:
    """The SR training budget of a run's settings, in words."""
    return (f"{settings.get('adapt_steps')} adaptation + {settings.get('onestep_steps')} one-step steps "
            f"({settings.get('onestep_recipe', 'sr_onestep.yaml')})")


def comparison(data: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """Markdown lines: this run's and another run's (another SR budget's) correlations side by side."""
    theirs = {c["proxy"]: c for c in other["correlations"]}
    new, old = budget(data["settings"] or {}), budget(other.get("settings") or {})
    lines = ["## Both budgets side by side (higher is better)", "",
             f"This run: {new}; command `{data['command']}`.  ",
             f"Other run: {old}; command `{other['command']}`.", "",
             "| proxy | tau (this) | rho (this) | tau (other) | rho (other) |", "|---|---|---|---|---|"]
    for c in sorted(data["correlations"], key=lambda c: -c["kendall_tau"]):
        o = theirs.get(c["proxy"])
        other_cells = f"{o['kendall_tau']:.3f} | {o['spearman_rho']:.3f}" if o else "- | -"
        lines.append(f"| {c['proxy']} | {c['kendall_tau']:.3f} | {c['spearman_rho']:.3f} | {other_cells} |")
    ours = {r["arch_id"]: r["psnr_y"] for r in data["runs"] if r["seed"] == data["settings"].get("seed", 0)}
    prev = {r["arch_id"]: r["psnr_y"] for r in other["runs"] if r["seed"] == (other.get("settings") or {}).get("seed", 0)}
    shared = sorted(set(ours) & set(prev))
    if len(shared) >= 3:
        import scipy.stats  # noqa: PLC0415

        tau, p = scipy.stats.kendalltau([ours[a] for a in shared], [prev[a] for a in shared])
        lines += ["", f"Rank agreement of the final PSNR-Y between the two budgets over the {len(shared)} shared archs: "
                  f"Kendall tau {tau:.3f} (p {p:.3g})."]
    return [*lines, ""]


def markdown(data: dict[str, Any], base: list[dict[str, Any]], compare: dict[str, Any] | None = None) -> str:
    s = data["settings"] or {}
    best = max(data["correlations"], key=lambda c: c["kendall_tau"])
    lines = [f"Command: `{data['command']}` (after `python benchmarks/proxy_validity.py train` with the settings "
             f"below). Load average at scoring: {', '.join(f'{x:.1f}' for x in data['load_average'])}.", "",
             f"{len(base)} archs of the search's space, each extracted with its distilled surrogates and taken "
             f"through `experiments/recipes/{s.get('adapt_recipe', 'sr_adapt.yaml')}` ({s.get('adapt_steps')} steps) "
             f"and `{s.get('onestep_recipe', 'sr_onestep.yaml')}` ({s.get('onestep_steps')} steps), batch {s.get('batch_size')}, crops {s.get('crop')} px "
             f"(training data: the recipes' built-in scikit-image photos); final score: one-step PSNR-Y on "
             f"{', '.join(Path(d).name for d in s.get('data', []))} (all images pooled"
             f"{', center crops of ' + str(s['max_side']) + ' px' if s.get('max_side') else ''}).", "",
             "## Final SR quality per arch", "", "| arch | GMACs | params (M) | PSNR-Y (dB) | SSIM-Y | train s |",
             "|---|---|---|---|---|---|"]
    for r in sorted(base, key=lambda r: -r["gmacs"]):
        lines.append(f"| `{r['arch']}` | {r['gmacs']:.3f} | {r['params_m']:.2f} | {r['psnr_y']:.3f} | "
                     f"{r['ssim_y']:.4f} | {r['train_s']:.0f} |")
    lines += ["", "## Rank correlation with the final PSNR-Y (higher is better)", "",
              "tau 90% CI: 5-95th percentile over 1000 bootstrap resamples of the archs; P(> GMACs): share of "
              "those resamples in which the proxy's tau exceeds GMACs' tau. tau (resolvable): Kendall's tau-a over "
              "only the arch pairs whose PSNR-Y differs by more than the largest seed-noise difference below "
              f"({resolvable_pairs(data)} pairs of {len(base) * (len(base) - 1) // 2}).", "",
              "| proxy | Kendall tau | p | tau 90% CI | P(> GMACs) | tau (resolvable) | Spearman rho | p | s/arch |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(data["correlations"], key=lambda c: -c["kendall_tau"]):
        sec = f"{c['s_per_arch']:.2f}" if c["s_per_arch"] is not None else "-"
        ci = f"{c['tau_ci90'][0]:.2f} - {c['tau_ci90'][1]:.2f}" if "tau_ci90" in c else "-"
        beats = f"{c['p_beats_gmacs']:.2f}" if "p_beats_gmacs" in c and c["proxy"] != "GMACs" else "-"
        lines.append(f"| {c['proxy']} | {c['kendall_tau']:.3f} | {c['tau_p']:.3g} | {ci} | {beats} | "
                     f"{c.get('tau_resolvable', float('nan')):.3f} | "
                     f"{c['spearman_rho']:.3f} | {c['rho_p']:.3g} | {sec} |")
    lines += ["", "## Noise floor (same arch, another training seed)", "",
              "| arch | PSNR-Y seed A | PSNR-Y seed B | abs diff (dB) |", "|---|---|---|---|"]
    lines += [f"| `{n['arch']}` | {n['psnr_seed_a']:.3f} | {n['psnr_seed_b']:.3f} | {n['abs_diff']:.3f} |"
              for n in data["noise_floor"]]
    psnr = [r["psnr_y"] for r in base]
    others = [r["psnr_y"] for r in base if r["gmacs"] != min(b["gmacs"] for b in base)]
    lines += ["", f"PSNR-Y spread over the {len(base)} archs: {max(psnr) - min(psnr):.3f} dB ({max(others) - min(others):.3f} "
              "dB without the smallest arch)" + (f"; on the same images bicubic gives {data['references']['bicubic']:.3f} "
              f"dB and the VAE's own reconstruction {data['references']['vae-recon']:.3f} dB" if "references" in data
              else "") + (f"; seed noise {min(n['abs_diff'] for n in data['noise_floor']):.3f}-"
              f"{max(n['abs_diff'] for n in data['noise_floor']):.3f} dB." if data["noise_floor"] else ".")]
    verdict = ("reaches" if best["kendall_tau"] >= 0.5 else "does NOT reach")
    lines += ["", f"Best proxy over these {len(base)} archs: **{best['proxy']}** (tau {best['kendall_tau']:.3f}), which "
              f"{verdict} tau >= 0.5.", ""]
    if compare is not None:
        lines += comparison(data, compare)
    planned = s.get("archs")
    if planned and len(base) < planned:
        lines += [f"**Incomplete**: {len(base)} of the {planned} archs finished training before scoring; with so few "
                  "archs the correlations are not evidence either way. The train command resumes (finished archs "
                  "are skipped); score again afterwards.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    for name, func in (("train", cmd_train), ("score", cmd_score)):
        p = sub.add_parser(name)
        p.set_defaults(func=func)
        p.add_argument("--work", type=Path, required=True, help="where models and partial results go")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int, default=1)
    train = sub.choices["train"]
    train.add_argument("--data", type=Path, action="append", required=True, help="HR folder (repeatable)")
    train.add_argument("--space", default="tiny_ldm")
    train.add_argument("--surrogates", type=Path, help="trained surrogates folder of the space (none: untrained, "
                       "for a smoke run only)")
    train.add_argument("--search", type=Path, help="a search folder of the space: its Pareto set is included")
    train.add_argument("--shard", default="0/1", help="i/n: run every n-th job from the i-th (parallel workers)")
    train.add_argument("--archs", type=int, default=12)
    train.add_argument("--noise-archs", type=int, default=2, help="archs retrained with another seed")
    train.add_argument("--adapt-steps", type=int, default=60)
    train.add_argument("--onestep-steps", type=int, default=40)
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--adapt-recipe", default="sr_adapt.yaml", help="SR adaptation recipe in experiments/recipes")
    train.add_argument("--onestep-recipe", default="sr_onestep.yaml", help="one-step recipe in experiments/recipes "
                       "(sr_x4_compact_onestep.yaml: the quickstart's ground-truth latent L1 + L2 loss)")
    train.add_argument("--crop", type=int, default=64)
    train.add_argument("--max-side", type=int, default=None, help="center-crop evaluation images (default: whole)")
    score = sub.choices["score"]
    score.add_argument("--space", default="tiny_ldm")
    score.add_argument("--surrogates", type=Path, help="the surrogates folder the archs were built from")
    score.add_argument("--validation-count", type=int, default=16, help="validation latents of the proxies")
    score.add_argument("--proxies", type=int, default=len(PROXIES), help="score only the first N evaluator "
                       "configurations of PROXIES (the default distillation evaluator first)")
    score.add_argument("--out", type=Path, default=RESULTS)
    score.add_argument("--name", default="proxy_validity", help="results file name (OUT/NAME.json, .md)")
    score.add_argument("--compare", type=Path, help="another run's results JSON (another SR budget): its "
                       "correlations are tabled next to these")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
