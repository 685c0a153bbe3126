"""Markdown reports: one run (search, surrogates, SR metrics) or several searches side by side.

A *run* is a search folder (it has ``trials.jsonl``) or an experiment folder ``runs/<name>/`` with stage
subfolders: ``search/``, ``surrogates/`` (a ``*.csv`` error table), ``evaluate/`` (the SR ``summary.csv``).
What exists is reported; what does not is named as missing.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tocsr_nas.arch import split_arch_string
from tocsr_nas.atomic import write_json, write_text
from tocsr_nas.errors import ConfigError
from tocsr_nas.search.results import pick_trial
from tocsr_nas.search.store import TRIALS_FILE, read_header

from . import figures
from .frames import (
    candidates_seen,
    choice_frequencies,
    complete,
    has_latency,
    hypervolume_curves,
    load_runs,
    pareto_front,
    reference_point,
    strategy_ranking,
    teacher_cost,
)
from .tables import pareto_table, ranking_table, to_markdown, write_table

logger = logging.getLogger(__name__)
PICK_COLUMNS = ("eps", "trial_id", "loss", "gmacs", "params_m", "latency_ms", "macs_ratio", "params_ratio",
                "latency_ratio", "arch")
COST_PLOTS = (("gmacs", "pareto_gmacs"), ("params_m", "pareto_params"), ("latency_ms", "pareto_latency"))
MAX_ROWS = 40  # rows of a stage's CSV shown in the Markdown (the full table is copied next to it)


@dataclasses.dataclass(frozen=True)
class RunStages:
    """The stage outputs found in a run folder."""

    root: Path
    search: Path | None
    surrogates: tuple[Path, ...]
    sr: tuple[Path, ...]

    @property
    def missing(self) -> list[str]:
        """Names of the stages with no output."""
        found = {"search": self.search is not None, "surrogates": bool(self.surrogates), "sr": bool(self.sr)}
        return [name for name, ok in found.items() if not ok]


def find_stages(run: str | Path) -> RunStages:
    """Locate the search folder and the surrogate / SR metric tables of a run.

    Raises:
        ConfigError: ``run`` is not a folder.
    """
    root = Path(run)
    if not root.is_dir():
        raise ConfigError("not a folder (expected a search folder or a runs/<name>/ folder)", source=root)
    search = root if (root / TRIALS_FILE).is_file() else root / "search" if (root / "search" / TRIALS_FILE).is_file() else None
    surrogates = tuple(sorted((root / "surrogates").glob("*.csv")))
    sr = tuple(sorted((root / "evaluate").glob("summary.csv")))
    return RunStages(root, search, surrogates, sr)


def _same_arch(a: str, b: str) -> bool:
    """Equal choices, a decision left out of one string counting as the teacher op ``T``."""
    pairs_a, pairs_b = dict(split_arch_string(a)), dict(split_arch_string(b))
    return all(pairs_a.get(k, "T") == pairs_b.get(k, "T") for k in set(pairs_a) | set(pairs_b))


def anchor_points(trials: pd.DataFrame, anchors: Mapping[str, str], cost: str) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """Named arch strings -> their (cost, loss) among the complete trials; also the names not evaluated."""
    done = complete(trials, ("loss", cost))
    points, absent = {}, []
    for name, arch in anchors.items():
        hits = done[[_same_arch(arch, text) for text in done.arch]]
        if hits.empty:
            absent.append(name)
        else:
            points[name] = (float(hits[cost].iloc[0]), float(hits.loss.iloc[0]))
    return points, absent


def _picks(folder: Path, eps_values: Sequence[float]) -> pd.DataFrame:
    rows = []
    for eps in eps_values:
        try:
            rows.append({"eps": eps, **pick_trial(folder, eps).to_dict()})
        except ConfigError as err:
            logger.info("no pick at eps %s: %s", eps, err)
            rows.append({"eps": eps, "arch": "(no complete trial reaches this eps)"})
    picks = pd.DataFrame(rows)
    return picks[[c for c in PICK_COLUMNS if c in picks]]


def _csv_section(paths: Sequence[Path], out: Path, name: str) -> list[str]:
    lines = []
    for path in paths:
        table = pd.read_csv(path)
        stem = out / "tables" / f"{name}_{path.stem}"
        write_table(table, stem, formats=("csv", "tex"))
        lines += [f"`{path}` ({len(table)} rows; full table: [{stem.name}.csv](tables/{stem.name}.csv)):", "",
                  to_markdown(table.head(MAX_ROWS))]
    return lines


def _sr_gains(paths: Sequence[Path]) -> list[str]:
    """Each SR method's mean PSNR-Y gain over the bicubic row of the same dataset (the run's own model is
    ``onestep``; rows named after a model folder or shipped model are the ``evaluate.models`` compared with it)."""
    lines = []
    for path in paths:
        table = pd.read_csv(path)
        if not {"dataset", "method", "psnr_y"} <= set(table.columns):
            continue
        rows = []
        for dataset, group in table.groupby("dataset", sort=False):
            bicubic = group.loc[group.method == "bicubic", "psnr_y"]
            if bicubic.empty:
                continue
            rows += [{"dataset": dataset, "method": r.method, "psnr_y": r.psnr_y,
                      "gain over bicubic (dB)": r.psnr_y - float(bicubic.iloc[0])}
                     for r in group.itertuples() if r.method not in {"bicubic", "vae-recon"}]
        if rows:
            lines += ["PSNR-Y gain over bicubic on the same images (`onestep` is this run's model):", "",
                      to_markdown(pd.DataFrame(rows))]
    return lines


def _space_candidates(header: Mapping[str, Any]) -> dict[str, list[str]] | None:
    """Decision -> candidate labels from the search's space, when it loads; None otherwise."""
    try:
        import search_spaces  # noqa: PLC0415 (loading a space is slow: only when reporting)

        space = search_spaces.load(header["config"]["space"])
    except Exception as err:  # noqa: BLE001 (any failure just means: label columns from the trials instead)
        logger.info("space of the search not loadable (%s); heatmap columns from the trials", err)
        return None
    return {d.name: [c.label for c in d.candidates] for d in space.decisions}


def _search_section(folder: Path, out: Path, *, eps: Sequence[float] | None, true_front: pd.DataFrame | None,
                    anchors: Mapping[str, str], load_space: bool) -> tuple[list[str], dict[str, Any]]:
    header = read_header(folder)
    config = header.get("config", {})
    trials = load_runs([folder])
    eps_values = list(eps) if eps else list(config.get("eps", [0.3]))
    objectives = config.get("objectives") or ["loss", "gmacs"]
    latency = has_latency(trials)
    counts = trials.state.value_counts().to_dict()
    lines = ["## Search", "",
             (f"Folder `{folder}`: space `{header.get('space')}`, strategy `{header.get('strategy')}`, seed "
              f"{header.get('seed')}, budget {config.get('budget')}, eps {eps_values}, objectives "
              f"{', '.join(objectives)}."), "",
             "Trials: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("complete", "failed", "infeasible")) + ".", ""]
    summary: dict[str, Any] = {"search": str(folder), "trials": {k: int(v) for k, v in counts.items()}}
    if complete(trials).empty:
        return [*lines, "No complete trial yet: no figures.", ""], summary

    picks = _picks(folder, eps_values)
    write_table(picks, out / "tables" / "winner")
    winner = picks.dropna(subset=["trial_id"]).iloc[0] if "trial_id" in picks and picks.trial_id.notna().any() else None
    lines += ["### Winner vs the teacher", "",
              (f"The cheapest complete trial (in {objectives[1]}) with loss <= eps (`pick_trial`); `macs_ratio` and "
               "`params_ratio` say how many times fewer GMACs and parameters it has than the teacher"
               + (", `latency_ratio` how many times faster it runs (measured latency table)." if latency else ".")), ""]
    teacher = {cost: teacher_cost(trials, cost) for cost in ("gmacs", "params_m")}
    if None not in teacher.values():
        if latency:
            teacher["latency_ms"] = teacher_cost(trials, "latency_ms")
        shown = f", {teacher['latency_ms']:.4g} ms per UNet call" if teacher.get("latency_ms") is not None else ""
        lines += [f"Teacher: {teacher['gmacs']:.4g} GMACs, {teacher['params_m']:.4g} M parameters{shown}.", ""]
        summary["teacher"] = teacher
    lines += [to_markdown(picks)]
    marks: dict[str, str] = dict(anchors)
    if winner is not None:
        marks = {f"pick (eps={winner.eps:g})": winner.arch, **marks}
        summary["winner"] = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in winner.to_dict().items()}

    for cost, name in COST_PLOTS:
        if cost not in trials or (cost == "latency_ms" and not latency):
            continue
        points, absent = anchor_points(trials, marks, cost)
        front_true = true_front if true_front is not None and cost in true_front else None
        saved = figures.pareto_plot(trials, out / f"{name}.png", cost=cost, true_front=front_true, anchors=points)
        lines += [f"![loss vs {cost}]({saved.path.name})", ""]
        if absent and cost == "gmacs":
            lines += [f"Anchors not evaluated in this search: {', '.join(absent)}.", ""]

    front = pareto_front(trials)
    write_table(pareto_table(front), out / "tables" / "pareto", caption="Pareto set (loss vs GMACs)")
    candidates = (_space_candidates(header) if load_space else None) or candidates_seen(trials.arch)
    heat = figures.choice_heatmap(choice_frequencies(front.arch, candidates), out / "choices.png",
                                  title=f"choices in the Pareto set ({len(front)} archs)")
    lines += ["### Pareto set", "", (f"{len(front)} Pareto-optimal archs (loss vs GMACs); "
                                         "[CSV](tables/pareto.csv), [LaTeX](tables/pareto.tex)."), "", to_markdown(pareto_table(front))]
    if latency:
        fast = pareto_front(trials, ("loss", "latency_ms"))
        write_table(pareto_table(fast), out / "tables" / "pareto_latency", caption="Pareto set (loss vs latency)")
        lines += [(f"{len(fast)} Pareto-optimal archs (loss vs latency per UNet call); "
                   "[CSV](tables/pareto_latency.csv), [LaTeX](tables/pareto_latency.tex)."), "",
                  to_markdown(pareto_table(fast))]
        summary["pareto_latency_size"] = len(fast)
    lines += [f"![choices]({heat.path.name})", ""]
    if winner is not None:
        drawn = figures.arch_diagram(winner.arch, out / "winner.png",
                                     title=f"winner: trial {int(winner.trial_id)} (loss {winner.loss:.3g}, "
                                           f"{winner.get('macs_ratio', float('nan')):.2f}x fewer GMACs"
                                           + (f", {winner.get('latency_ratio', float('nan')):.2f}x faster" if latency else "")
                                           + " than the teacher)")
        lines += ["### Winner's architecture", "", f"`{winner.arch}`", "", f"![winner]({drawn.path.name})", ""]
    curves = hypervolume_curves(trials, reference_point(trials))
    hv = figures.hypervolume_plot(curves, out / "hypervolume.png", title="hypervolume vs evaluations")
    lines += ["### Progress", "", f"![hypervolume]({hv.path.name})", ""]
    summary["pareto_size"] = len(front)
    return lines, summary


def build_report(run: str | Path, out: str | Path | None = None, *, eps: Sequence[float] | None = None,
                 true_front: pd.DataFrame | None = None, anchors: Mapping[str, str] | None = None,
                 load_space: bool = True) -> Path:
    """Write ``report.md`` (with PNGs, ``tables/`` and ``summary.json``) for a run; returns its path.

    Args:
        run: a search folder or a ``runs/<name>/`` folder.
        out: where to write (default ``run/report``).
        eps: loss bounds for the winner table (default: the search's).
        true_front: rows with ``loss`` and ``gmacs`` (and ``params_m``), drawn on the Pareto plots.
        anchors: name -> arch string, marked on the Pareto plots when evaluated.
        load_space: label the heatmap columns with the space's candidates (else those seen in the trials).

    Raises:
        ConfigError: ``run`` is not a folder or has none of the stages.
    """
    stages = find_stages(run)
    if len(stages.missing) == 3:
        raise ConfigError("no stage output here (expected trials.jsonl, search/, surrogates/*.csv or "
                          "evaluate/summary.csv)", source=run)
    out = Path(out) if out is not None else stages.root / "report"
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Report: `{stages.root}`", ""]
    if stages.missing:
        lines += [f"Missing stages: {', '.join(stages.missing)}.", ""]
    summary: dict[str, Any] = {"run": str(stages.root), "missing": stages.missing}
    if stages.search is not None:
        section, found = _search_section(stages.search, out, eps=eps, true_front=true_front, anchors=anchors or {},
                                         load_space=load_space)
        lines += section
        summary.update(found)
    if stages.surrogates:
        lines += ["## Surrogates", "", *_csv_section(stages.surrogates, out, "surrogates")]
    if stages.sr:
        lines += ["## Super-resolution", "", *_sr_gains(stages.sr), *_csv_section(stages.sr, out, "sr")]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    write_json(out / "summary.json", summary)
    logger.info("wrote %s", path)
    return path


def build_comparison(runs: Sequence[str | Path], out: str | Path, *, true_front: pd.DataFrame | None = None,
                     reference: Sequence[float] | None = None, band: str = "minmax", fraction: float = 0.95) -> Path:
    """Write ``compare.md``: hypervolume curves per strategy, the ranking table and the merged Pareto plot.

    Args:
        runs: search folders, run folders, or folders holding several searches (e.g. strategies x seeds).
        out: where to write.
        true_front: rows with ``loss`` and ``gmacs``; adds hypervolume ratios to it.
        reference: (loss, GMACs) reference point; by default the worst over all runs plus a 10% margin.
        band: spread over seeds, ``minmax`` or ``std``.
        fraction: the ranking counts evaluations to reach this share of the best (or true) hypervolume.
    """
    out = Path(out)
    trials = load_runs(runs)
    if complete(trials).empty:
        raise ConfigError("no complete trials in these searches", source=", ".join(map(str, runs)))
    out.mkdir(parents=True, exist_ok=True)
    reference = tuple(reference) if reference is not None else reference_point(
        pd.concat([trials, true_front.assign(state="complete")]) if true_front is not None else trials)
    curves = hypervolume_curves(trials, reference, true_front=true_front)
    value = "ratio" if true_front is not None else "hypervolume"
    runs_table = trials.groupby("run", sort=False).agg(strategy=("strategy", "first"), seed=("seed", "first"),
                                                         trials=("trial_id", "size"), evaluations=("evaluation", "max"),
                                                         folder=("folder", "first")).reset_index()
    latency = has_latency(trials)
    if latency:  # each run's teacher time: latencies of runs measured on different targets are not comparable
        runs_table.insert(5, "teacher latency (ms)", [teacher_cost(trials[trials.run == run], "latency_ms")
                                                      for run in runs_table.run])
        runs_table.insert(6, "fastest on front (ms)", [
            pareto_front(trials[trials.run == run], ("loss", "latency_ms")).latency_ms.min() for run in runs_table.run])
    lines = ["# Comparison", "", (f"{len(runs_table)} searches, {runs_table.strategy.nunique()} strategies. Hypervolume of "
                                     f"(loss, GMACs) w.r.t. the reference point ({reference[0]:.4g}, {reference[1]:.4g})."),
             "",
             to_markdown(runs_table)]
    hv = figures.hypervolume_plot(curves, out / "hypervolume.png", value="hypervolume", band=band)
    lines += ["## Hypervolume vs evaluations", "", f"![hypervolume]({hv.path.name})", ""]
    if true_front is not None:
        ratio = figures.hypervolume_plot(curves, out / "hypervolume_ratio.png", value="ratio", band=band)
        lines += [f"![hypervolume ratio]({ratio.path.name})", ""]
    ranking = strategy_ranking(curves, value, fraction)
    table = ranking_table(ranking, value, fraction)
    write_table(table, out / "tables" / "ranking", caption=f"Strategies ranked by final {value}")
    write_table(curves, out / "tables" / "hypervolume_curves", formats=("csv",))
    target = "the true front's hypervolume" if true_front is not None else "the best final hypervolume of any run"
    lines += ["## Ranking", "", (f"Final {value} over seeds; evaluations until a run reached {fraction:.0%} of {target} "
                                   "(mean over the runs that did). [CSV](tables/ranking.csv), [LaTeX](tables/ranking.tex)."),
              "",
              to_markdown(table)]
    pareto = figures.pareto_plot(trials, out / "pareto_gmacs.png", true_front=true_front,
                                 title="loss vs GMACs, all seeds of each strategy")
    lines += ["## Pareto fronts", "", f"![pareto]({pareto.path.name})", ""]
    if latency:
        fast = figures.pareto_plot(trials, out / "pareto_latency.png", cost="latency_ms",
                                   title="loss vs latency, all seeds of each strategy")
        lines += [("Loss vs measured latency per UNet call (searches with a latency evaluator; compare only runs "
                   "whose teacher latency above shows the same target)."), "", f"![pareto latency]({fast.path.name})",
                  ""]
    path = out / "compare.md"
    write_text(path, "\n".join(lines))
    write_text(out / "summary.json", ranking.to_json(orient="records", indent=1))
    logger.info("wrote %s", path)
    return path
