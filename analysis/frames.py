"""Search folders as tidy DataFrames, and hypervolume-vs-evaluations curves per run and per strategy.

A *trials frame* has one row per stored trial of one or many searches, with the store's columns plus ``strategy``,
``seed``, ``run`` (a unique label per search folder), ``folder`` and ``evaluation`` (how many expensive evaluations
that search had made once this trial was done; infeasible trials are not evaluations and keep the previous count).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tocsr_nas.arch import split_arch_string
from tocsr_nas.errors import ConfigError
from tocsr_nas.search.store import TRIALS_FILE, read_header, read_trials

from .pareto import hypervolume, pareto_mask

OBJECTIVES = ("loss", "gmacs")
RATIO_COLUMNS = {"gmacs": "macs_ratio", "params_m": "params_ratio",  # cost -> how many times the teacher's is larger
                 "latency_ms": "latency_ratio"}


def search_folders(paths: Iterable[str | Path]) -> list[Path]:
    """Expand run paths into search folders: a folder with ``trials.jsonl``, its ``search/``, or any below it.

    Raises:
        ConfigError: a path holds no search folder.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / TRIALS_FILE).is_file():
            found.append(path)
        elif (path / "search" / TRIALS_FILE).is_file():
            found.append(path / "search")
        else:
            below = sorted(p.parent for p in path.rglob(TRIALS_FILE)) if path.is_dir() else []
            if not below:
                raise ConfigError(f"no search folder (with {TRIALS_FILE}) here or below", source=path)
            found.extend(below)
    return list(dict.fromkeys(found))


def with_evaluations(trials: pd.DataFrame) -> pd.DataFrame:
    """Add the ``evaluation`` column (1-based count of non-infeasible trials so far) to one search's trials."""
    trials = trials.sort_values("trial_id").reset_index(drop=True)
    trials["evaluation"] = (trials.state != "infeasible").cumsum().astype(int)
    return trials


def load_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The trials of every search folder under ``paths`` in one frame (see the module doc for its columns)."""
    frames, labels = [], []
    for folder in search_folders(paths):
        header = read_header(folder)
        trials = read_trials(folder)
        if trials.empty:
            continue
        label = f"{header.get('strategy', '?')}/seed{header.get('seed', '?')}"
        if label in labels:
            label = f"{label} ({folder})"
        labels.append(label)
        trials = with_evaluations(trials)
        trials.insert(0, "run", label)
        trials.insert(1, "strategy", str(header.get("strategy", "?")))
        trials.insert(2, "seed", header.get("seed"))
        trials["folder"] = str(folder)
        frames.append(trials)
    if not frames:
        raise ConfigError("the search folder(s) hold no trials yet", source=", ".join(map(str, paths)))
    return pd.concat(frames, ignore_index=True)


def complete(trials: pd.DataFrame, objectives: Sequence[str] = OBJECTIVES) -> pd.DataFrame:
    """Complete trials with finite values of every objective."""
    if trials.empty or "state" not in trials:
        return trials.iloc[0:0]
    done = trials[trials.state == "complete"]
    return done[np.isfinite(done[list(objectives)].to_numpy(dtype=float)).all(axis=1)]


def pareto_front(trials: pd.DataFrame, objectives: Sequence[str] = OBJECTIVES) -> pd.DataFrame:
    """The Pareto-optimal complete trials (all objectives minimised), sorted by the last objective (the cost)."""
    done = complete(trials, objectives)
    if done.empty:
        return done
    front = done[pareto_mask(done[list(objectives)].to_numpy(dtype=float))]
    return front.sort_values(list(objectives)[::-1]).reset_index(drop=True)


def teacher_cost(trials: pd.DataFrame, cost: str = "gmacs") -> float | None:
    """The teacher's cost, recovered as ``cost * <ratio column>`` from the trials (None when no ratio is stored)."""
    ratio = RATIO_COLUMNS.get(cost)
    if ratio is None or ratio not in trials or cost not in trials:
        return None
    values = (trials[cost] * trials[ratio]).to_numpy(dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.median(values)) if len(values) else None


def has_latency(trials: pd.DataFrame) -> bool:
    """Whether some complete trial has a measured latency (the search had a latency evaluator)."""
    return "latency_ms" in trials and not complete(trials, ("loss", "latency_ms")).empty


def reference_point(trials: pd.DataFrame, objectives: Sequence[str] = OBJECTIVES, margin: float = 0.1) -> tuple[float, ...]:
    """A hypervolume reference point: the worst complete value of each objective, plus ``margin`` of its range."""
    done = complete(trials, objectives)
    if done.empty:
        raise ConfigError("no complete trials to set a hypervolume reference point from")
    values = done[list(objectives)].to_numpy(dtype=float)
    high, low = values.max(axis=0), values.min(axis=0)
    spread = np.where(high > low, high - low, np.maximum(np.abs(high), 1.0))
    return tuple(float(v) for v in high + margin * spread)


def hypervolume_curves(trials: pd.DataFrame, reference: Sequence[float], *, objectives: Sequence[str] = OBJECTIVES,
                       true_front: pd.DataFrame | None = None) -> pd.DataFrame:
    """Hypervolume of each run's complete trials after ``k`` evaluations, for every ``k`` it made.

    Args:
        trials: a trials frame (:func:`load_runs`).
        reference: one worst value per objective.
        objectives: the minimised columns.
        true_front: rows with the objective columns; adds ``ratio`` = hypervolume / the true front's.

    Returns:
        Columns run, strategy, seed, evaluation, hypervolume (and ratio).
    """
    best = hypervolume(true_front[list(objectives)].to_numpy(dtype=float), reference) if true_front is not None else None
    if best is not None and best <= 0:
        raise ConfigError("the true front dominates no volume below the reference point", key="true_front")
    rows = []
    for run, group in trials.groupby("run", sort=False):
        front = np.empty((0, len(objectives)))
        done = group.state == "complete"
        values = group[list(objectives)].to_numpy(dtype=float)
        volume = 0.0
        for k in range(1, int(group.evaluation.max()) + 1):
            at_k = ((group.evaluation == k) & done).to_numpy() & np.isfinite(values).all(axis=1)
            if at_k.any():
                front = np.vstack([front, values[at_k]])
                front = front[pareto_mask(front)]
                volume = hypervolume(front, reference)
            row = {"run": run, "strategy": group.strategy.iloc[0], "seed": group.seed.iloc[0], "evaluation": k,
                   "hypervolume": volume}
            if best is not None:
                row["ratio"] = volume / best
            rows.append(row)
    return pd.DataFrame(rows)


def summarize_curves(curves: pd.DataFrame, value: str = "hypervolume") -> pd.DataFrame:
    """Mean, std, min and max of ``value`` over the runs of each strategy at each evaluation count.

    A run shorter than the others keeps its last value (its search had stopped, its front had not shrunk).
    """
    wide = curves.pivot_table(index="evaluation", columns=["strategy", "run"], values=value).sort_index().ffill()
    rows = []
    for strategy in dict.fromkeys(curves.strategy):
        block = wide[strategy]
        rows.append(pd.DataFrame({"strategy": strategy, "evaluation": block.index, "mean": block.mean(axis=1),
                                  "std": block.std(axis=1, ddof=0), "min": block.min(axis=1),
                                  "max": block.max(axis=1), "runs": block.notna().sum(axis=1)}))
    return pd.concat(rows, ignore_index=True)


def strategy_ranking(curves: pd.DataFrame, value: str = "hypervolume", fraction: float = 0.95,
                     target: float | None = None) -> pd.DataFrame:
    """Strategies ranked by final ``value`` (mean over seeds), with evaluations needed to reach ``fraction`` of it.

    Args:
        curves: from :func:`hypervolume_curves`.
        value: ``hypervolume`` or ``ratio``.
        fraction: the share of ``target`` a run must reach.
        target: 1.0 for ``ratio``; by default the best final value over all runs.

    Returns:
        One row per strategy: runs, final_mean, final_std, evals_to_target (mean over the runs that reached it,
        NaN if none), reached (how many runs did), rank (1 = best final mean).
    """
    if target is None:
        target = 1.0 if value == "ratio" else float(curves.groupby("run")[value].max().max())
    rows = []
    for strategy, group in curves.groupby("strategy", sort=False):
        finals, needed = [], []
        for _, run in group.groupby("run", sort=False):
            run = run.sort_values("evaluation")
            finals.append(float(run[value].iloc[-1]))
            hit = run[run[value] >= fraction * target - 1e-12]
            if len(hit):
                needed.append(int(hit.evaluation.iloc[0]))
        rows.append({"strategy": strategy, "runs": len(finals), "final_mean": float(np.mean(finals)),
                     "final_std": float(np.std(finals)), "evals_to_target": float(np.mean(needed)) if needed else np.nan,
                     "reached": len(needed)})
    table = pd.DataFrame(rows).sort_values("final_mean", ascending=False).reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table


def candidates_seen(archs: Iterable[str]) -> dict[str, list[str]]:
    """Decision -> the labels seen for decisions of its unit kind (``T``, then ``I``, then alphabetical)."""
    decisions: list[str] = []
    by_kind: dict[str, set[str]] = {}
    for text in archs:
        for decision, label in split_arch_string(text):
            decisions.append(decision)
            by_kind.setdefault(decision.rsplit(":", 1)[1], set()).add(label)
    order = {kind: sorted(labels, key=lambda label: (label != "T", label != "I", label)) for kind, labels in by_kind.items()}
    return {decision: order[decision.rsplit(":", 1)[1]] for decision in dict.fromkeys(decisions)}


def choice_frequencies(archs: Iterable[str], candidates: dict[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """How often each candidate label is chosen per decision among ``archs`` (rows decisions, columns labels).

    Args:
        archs: arch strings (``stage:R=label,A=label;...``).
        candidates: decision -> its labels in the space's order (e.g. from ``space.decisions``); by default the
            labels seen, teacher (``T``) first.

    Returns:
        Frequencies in ``[0, 1]`` (each row sums to 1); NaN where a label is not a candidate of that decision.
    """
    archs = list(archs)
    counts: dict[str, dict[str, int]] = {}
    for text in archs:
        for decision, label in split_arch_string(text):
            counts.setdefault(decision, {}).setdefault(label, 0)
            counts[decision][label] += 1
    total = len(archs)
    candidates = candidates_seen(archs) if candidates is None else candidates
    columns = list(dict.fromkeys(label for labels in candidates.values() for label in labels))
    table = pd.DataFrame(np.nan, index=list(candidates), columns=columns)
    for decision, labels in candidates.items():
        for label in labels:
            table.loc[decision, label] = counts.get(decision, {}).get(label, 0) / max(total, 1)
    table.index.name, table.columns.name = "decision", "candidate"
    return table


def read_true_front(path: str | Path, columns: Sequence[str] = OBJECTIVES) -> pd.DataFrame:
    """A CSV of reference points (e.g. every arch of a small space, evaluated) with at least ``columns``.

    Raises:
        ConfigError: the file is missing or lacks a column.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("no such file", source=path)
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ConfigError(f"not a readable CSV ({str(err).splitlines()[0]})", source=path) from None
    missing = [c for c in columns if c not in table]
    if missing:
        raise ConfigError(f"missing column(s) {missing}", source=path, allowed=list(table.columns))
    not_numeric = [c for c in columns if not pd.api.types.is_numeric_dtype(table[c])]
    if not_numeric:
        raise ConfigError(f"column(s) {not_numeric} are not numbers", source=path)
    return table
