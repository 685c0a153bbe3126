"""Figures of searches: Pareto fronts, hypervolume curves, choice heatmaps, an arch drawn stage by stage.

Each function takes DataFrames (or an arch string), writes one PNG and closes its figure. It returns a
:class:`Saved` with the path and the texts drawn (title, axis labels, legend entries, annotations), so callers
and tests can check what the figure says without keeping it open.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch, Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from tocsr_nas.arch import LETTER_KINDS, split_arch_string  # noqa: E402

from .frames import complete, pareto_front, summarize_curves, teacher_cost  # noqa: E402

AXIS_LABELS = {"loss": "relative distillation loss", "mse": "distillation MSE", "gmacs": "GMACs",
               "gmacs_no_attention": "GMACs (without attention)", "params_m": "parameters (M)",
               "latency_ms": "latency per UNet call (ms)",
               "hypervolume": "hypervolume", "ratio": "hypervolume ratio (to the true front)", "evaluation": "evaluations"}
CHOICE_COLOURS = {"teacher kept": "#d9d9d9", "skipped": "#fcbba1", "surrogate": "#9ecae1"}
DPI = 150


@dataclasses.dataclass(frozen=True)
class Saved:
    """A written figure and the texts it shows."""

    path: Path
    title: str
    xlabels: tuple[str, ...]
    ylabels: tuple[str, ...]
    legend: tuple[str, ...]
    texts: tuple[str, ...]


def _save(fig: Figure, path: str | Path) -> Saved:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    saved = Saved(
        path=path,
        title=fig.get_suptitle() or (axes[0].get_title() if axes else ""),
        xlabels=tuple(ax.get_xlabel() for ax in axes),
        ylabels=tuple(ax.get_ylabel() for ax in axes),
        legend=tuple(t.get_text() for legend in legends for t in legend.get_texts()),
        texts=tuple(t.get_text() for ax in axes for t in ax.texts),
    )
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return saved


def strategy_colours(names: Sequence[str]) -> dict[str, tuple]:
    """One tab10 colour per name, in order."""
    palette = plt.get_cmap("tab10").colors
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _steps(front: pd.DataFrame, cost: str, loss: str) -> tuple[np.ndarray, np.ndarray]:
    front = front.sort_values([cost, loss])
    return front[cost].to_numpy(dtype=float), front[loss].to_numpy(dtype=float)


def pareto_plot(trials: pd.DataFrame, path: str | Path, *, cost: str = "gmacs", loss: str = "loss",
                by: str = "strategy", true_front: pd.DataFrame | None = None, teacher: float | None = None,
                anchors: Mapping[str, tuple[float, float]] | None = None, title: str | None = None) -> Saved:
    """Loss vs cost: every evaluated point faint, each group's front as a step line, teacher and anchors labelled.

    Args:
        trials: a trials frame (:func:`analysis.frames.load_runs`); ``by`` names the grouping column.
        path: the PNG to write.
        cost: the x column (``gmacs``, ``params_m``, ...).
        loss: the y column.
        by: one colour and one front per value of this column.
        true_front: rows with ``cost`` and ``loss`` (e.g. from enumerating a small space), drawn dashed.
        teacher: the teacher's cost (at loss 0); by default recovered from the ratio columns, if stored.
        anchors: label -> (cost, loss) points to mark, e.g. a reference arch or the pick.
        title: the axes title.
    """
    fig, ax = plt.subplots(figsize=(7, 4.8))
    done = complete(trials, (loss, cost))
    groups = list(dict.fromkeys(done[by])) if by in done else []
    colours = strategy_colours(groups)
    for name in groups:
        group = done[done[by] == name]
        ax.scatter(group[cost], group[loss], s=14, color=colours[name], alpha=0.25, linewidths=0)
        x, y = _steps(pareto_front(group, (loss, cost)), cost, loss)
        ax.step(x, y, where="post", color=colours[name], lw=1.6, marker="o", ms=4, label=f"{name} ({len(x)} on front)")
    if true_front is not None and len(true_front):
        x, y = _steps(pareto_front(true_front.assign(state="complete"), (loss, cost)), cost, loss)
        ax.step(x, y, where="post", color="black", lw=1.2, ls="--", label="true front")
    teacher = teacher_cost(trials, cost) if teacher is None else teacher
    marks = dict(anchors or {})
    if teacher is not None:
        ax.scatter([teacher], [0.0], marker="*", s=160, color="black", zorder=5, label="teacher")
        ax.annotate("teacher", (teacher, 0.0), xytext=(-8, 12), textcoords="offset points", ha="right", fontsize=8,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    for i, (label, (x, y)) in enumerate(marks.items()):
        ax.scatter([x], [y], marker="D", s=50, facecolor="white", edgecolor="black", zorder=6)
        ax.annotate(label, (x, y), xytext=(8, 8 if i % 2 == 0 else -16), textcoords="offset points", fontsize=8,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
                    arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "0.3"})
    ax.set_xlabel(AXIS_LABELS.get(cost, cost))
    ax.set_ylabel(AXIS_LABELS.get(loss, loss))
    ax.set_title(title or f"{AXIS_LABELS.get(loss, loss)} vs {AXIS_LABELS.get(cost, cost)}")
    ax.grid(alpha=0.3)
    if len(done):
        shown = [done[loss].max(), *(y for _, y in marks.values()), 1e-9]
        if true_front is not None and len(true_front):
            shown.append(true_front[loss].max())
        top = max(shown)
        ax.set_ylim(-0.04 * top, 1.12 * top)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper right", framealpha=0.9)
    return _save(fig, path)


def hypervolume_plot(curves: pd.DataFrame, path: str | Path, *, value: str = "hypervolume", band: str = "minmax",
                     title: str | None = None) -> Saved:
    """Mean ``value`` vs evaluations per strategy, with a band over seeds (``minmax`` or ``std``).

    Args:
        curves: from :func:`analysis.frames.hypervolume_curves`.
        path: the PNG to write.
        value: ``hypervolume`` or ``ratio``.
        band: ``minmax`` (min to max over seeds) or ``std`` (mean ± one standard deviation).
        title: the axes title.
    """
    if band not in ("minmax", "std"):
        raise ValueError(f"band must be 'minmax' or 'std', got {band!r}")
    summary = summarize_curves(curves, value)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = strategy_colours(list(dict.fromkeys(summary.strategy)))
    for name, group in summary.groupby("strategy", sort=False):
        low, high = (group["min"], group["max"]) if band == "minmax" else (group["mean"] - group["std"], group["mean"] + group["std"])
        runs = int(group.runs.max())
        ax.plot(group.evaluation, group["mean"], color=colours[name], lw=1.8, label=f"{name} (n={runs})")
        ax.fill_between(group.evaluation, low, high, color=colours[name], alpha=0.2, linewidth=0)
    if value == "ratio":
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xlabel(AXIS_LABELS["evaluation"])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(AXIS_LABELS.get(value, value))
    spread = "min–max" if band == "minmax" else "± std"
    ax.set_title(title or f"{'hypervolume ratio' if value == 'ratio' else value} vs evaluations (mean, {spread} over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def choice_heatmap(frequencies: pd.DataFrame, path: str | Path, *, title: str | None = None) -> Saved:
    """Per decision, how often each candidate is chosen (one panel per unit kind; grey = not a candidate).

    Args:
        frequencies: from :func:`analysis.frames.choice_frequencies` (rows ``stage:K``, columns labels).
        path: the PNG to write.
        title: the figure title.
    """
    letters = list(dict.fromkeys(d.rsplit(":", 1)[1] for d in frequencies.index))
    panels = []
    for letter in letters:
        block = frequencies[[d.rsplit(":", 1)[1] == letter for d in frequencies.index]].dropna(axis=1, how="all")
        panels.append((letter, block))
    widths = [max(block.shape[1], 2) for _, block in panels]
    height = max(block.shape[0] for _, block in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(1.0 * sum(widths) + 1.5 * len(panels) + 1, 0.5 * height + 2.4),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#eeeeee")
    image = None
    for ax, (letter, block) in zip(axes[0], panels):
        values = np.ma.masked_invalid(block.to_numpy(dtype=float))
        image = ax.imshow(values, cmap=cmap, vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(block.shape[1]), list(block.columns), rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(block.shape[0]), [d.rsplit(":", 1)[0] for d in block.index], fontsize=8)
        for (i, j), share in np.ndenumerate(block.to_numpy(dtype=float)):
            if np.isfinite(share):
                ax.text(j, i, f"{share:.0%}", ha="center", va="center", fontsize=7,
                        color="black" if share > 0.6 else "white")
        ax.set_xlabel(f"{LETTER_KINDS.get(letter, letter)} candidate")
        ax.set_ylabel("stage")
    fig.colorbar(image, ax=list(axes[0]), fraction=0.04, pad=0.02, label="share of the Pareto set")
    fig.suptitle(title or "choices in the Pareto set")
    return _save(fig, path)


def choice_category(label: str) -> str:
    """``teacher kept`` (``T``), ``skipped`` (``I``) or ``surrogate`` (any other op)."""
    return {"T": "teacher kept", "I": "skipped"}.get(label, "surrogate")


def _stage_positions(stages: Sequence[str], height: float, width: float) -> tuple[dict[str, tuple[float, float]], bool]:
    """Box corners in a U (down stages left going down, mid at the bottom, up right going up), else in a row."""
    down = [s for s in stages if s.startswith("down")]
    up = [s for s in stages if s.startswith("up")]
    mid = [s for s in stages if s.startswith("mid")]
    dx, dy = width + 0.6, height + 0.5
    if not down or not up or len(down) + len(up) + len(mid) != len(stages):
        return {s: (i * dx, 0.0) for i, s in enumerate(stages)}, False
    positions = {s: (0.0, -i * dy) for i, s in enumerate(down)}
    bottom = -max(len(down), len(up)) * dy if mid else -(max(len(down), len(up)) - 1) * dy
    for i, s in enumerate(mid):
        positions[s] = ((i + 1) * dx, bottom)
    right = (len(mid) + 1) * dx if mid else dx
    for j, s in enumerate(up):
        positions[s] = (right, -(len(up) - 1 - j) * dy)
    return positions, True


def arch_diagram(arch: str, path: str | Path, *, title: str | None = None) -> Saved:
    """The arch's stages as boxes (U-shaped for down/mid/up stages), each decision coloured by its choice.

    Args:
        arch: an arch string (``stage:R=label,A=label;...``).
        path: the PNG to write.
        title: the figure title.
    """
    stages: dict[str, list[tuple[str, str]]] = {}
    for decision, label in split_arch_string(arch):
        stage, letter = decision.rsplit(":", 1)
        stages.setdefault(stage, []).append((LETTER_KINDS.get(letter, letter), label))
    longest = max(len(f"{kind}: {label}") for rows in stages.values() for kind, label in rows)
    row_h, width = 0.32, max(1.8, 0.058 * longest + 0.3)
    height = 0.45 + row_h * max(len(rows) for rows in stages.values())
    positions, u_shape = _stage_positions(list(stages), height, width)
    xs = [x for x, _ in positions.values()]
    ys = [y for _, y in positions.values()]
    fig_w, fig_h = max(xs) - min(xs) + width + 0.6, max(ys) - min(ys) + height + 1.2
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(min(xs) - 0.3, max(xs) + width + 0.3)
    ax.set_ylim(min(ys) - 0.25 - 0.5, max(ys) + height + 0.45)
    ax.axis("off")
    order = list(stages)
    for a, b in itertools.pairwise(order):
        (xa, ya), (xb, yb) = positions[a], positions[b]
        start, end = _edge(xa, ya, xb, yb, width, height)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, lw=1.2, color="0.35"))
    if u_shape:  # skip connections between the down and up stages at the same resolution
        down, up = [s for s in order if s.startswith("down")], [s for s in order if s.startswith("up")]
        for d, u in zip(down, reversed(up)):
            (xd, yd), (xu, yu) = positions[d], positions[u]
            if yd == yu:
                ax.plot([xd + width, xu], [yd + height / 2] * 2, ls=":", lw=1, color="0.6")
    for stage, rows in stages.items():
        x, y = positions[stage]
        ax.add_patch(FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    facecolor="white", edgecolor="0.3", lw=1.2))
        ax.text(x + width / 2, y + height - 0.2, stage, ha="center", va="center", fontsize=9, weight="bold")
        for i, (kind, label) in enumerate(rows):
            top = y + height - 0.4 - (i + 1) * row_h
            ax.add_patch(Rectangle((x + 0.08, top + 0.03), width - 0.16, row_h - 0.06,
                                   facecolor=CHOICE_COLOURS[choice_category(label)], edgecolor="0.5", lw=0.6))
            ax.text(x + 0.14, top + row_h / 2, f"{kind}: {label}", ha="left", va="center", fontsize=7)
    handles = [Patch(facecolor=colour, edgecolor="0.5", label=name) for name, colour in CHOICE_COLOURS.items()]
    ax.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0))
    ax.set_title(title or "architecture", fontsize=10, y=1.0 - 0.3 / fig_h, va="top")
    return _save(fig, path)


def _edge(xa: float, ya: float, xb: float, yb: float, width: float, height: float) -> tuple[tuple[float, float], ...]:
    """Arrow end points between two stage boxes (lower-left corners given)."""
    if ya == yb:  # side by side
        return (xa + width, ya + height / 2), (xb, yb + height / 2)
    if xa == xb:  # stacked
        return ((xa + width / 2, ya), (xb + width / 2, yb + height)) if yb < ya else \
            ((xa + width / 2, ya + height), (xb + width / 2, yb))
    if yb < ya:  # down into the bottom
        return (xa + width / 2, ya), (xb, yb + height / 2)
    return (xa + width, ya + height / 2), (xb + width / 2, yb)
