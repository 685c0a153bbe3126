"""DataFrames as CSV, Markdown and LaTeX tables (small renderers, no extra dependency)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd

from tocsr_nas.atomic import write_text

LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$"}
PARETO_COLUMNS = ("trial_id", "loss", "gmacs", "params_m", "latency_ms", "macs_ratio", "params_ratio", "latency_ratio",
                  "arch")


def format_value(value: object, digits: int = 4) -> str:
    """A cell as text: reals with ``digits`` significant digits, NaN/None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        return "" if math.isnan(value) else f"{float(value):.{digits}g}"
    return str(value)


def _cells(frame: pd.DataFrame, digits: int) -> list[list[str]]:
    return [[format_value(v, digits) for v in row] for row in frame.itertuples(index=False, name=None)]


def _numeric(frame: pd.DataFrame) -> list[bool]:
    return [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in frame.columns]


def to_markdown(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned; ``|`` in cells escaped)."""
    header = [str(c) for c in frame.columns]
    rows = [[cell.replace("|", r"\|") for cell in row] for row in _cells(frame, digits)]
    align = ["---:" if numeric else ":---" for numeric in _numeric(frame)]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters."""
    return "".join(LATEX_SPECIALS.get(char, char) for char in text)


def to_latex(frame: pd.DataFrame, digits: int = 4, caption: str | None = None, label: str | None = None) -> str:
    """A booktabs ``tabular`` (inside a ``table`` float when a caption or label is given)."""
    spec = "".join("r" if numeric else "l" for numeric in _numeric(frame))
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(str(c)) for c in frame.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in _cells(frame, digits)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption is None and label is None:
        return "\n".join(lines) + "\n"
    wrapped = [r"\begin{table}[t]", r"\centering"]
    if caption is not None:
        wrapped.append(rf"\caption{{{latex_escape(caption)}}}")
    if label is not None:
        wrapped.append(rf"\label{{{label}}}")
    return "\n".join([*wrapped, *lines, r"\end{table}"]) + "\n"


def write_table(frame: pd.DataFrame, stem: str | Path, formats: Sequence[str] = ("csv", "md", "tex"),
                caption: str | None = None, digits: int = 4) -> dict[str, Path]:
    """Write ``frame`` as ``stem.csv`` (full precision), ``stem.md`` and ``stem.tex``; returns format -> path."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    writers = {"csv": lambda: frame.to_csv(index=False), "md": lambda: to_markdown(frame, digits),
               "tex": lambda: to_latex(frame, digits, caption=caption, label=f"tab:{stem.name}" if caption else None)}
    unknown = set(formats) - set(writers)
    if unknown:
        raise ValueError(f"unknown table format(s) {sorted(unknown)} (allowed: {sorted(writers)})")
    paths = {}
    for kind in formats:
        paths[kind] = write_text(stem.with_suffix(f".{kind}"), writers[kind]())
    return paths


def pareto_table(front: pd.DataFrame, columns: Sequence[str] = PARETO_COLUMNS) -> pd.DataFrame:
    """The columns of a Pareto set worth reporting (those present), cheapest first as given."""
    return front[[c for c in columns if c in front]].reset_index(drop=True)


def ranking_table(ranking: pd.DataFrame, value: str = "hypervolume", fraction: float = 0.95) -> pd.DataFrame:
    """A strategy ranking (:func:`analysis.frames.strategy_ranking`) with ``mean ± std`` and ``reached`` as text."""
    share, value = f"{fraction:.0%}", {"ratio": "hypervolume ratio"}.get(value, value)
    return pd.DataFrame({
        "rank": ranking["rank"],
        "strategy": ranking.strategy,
        f"final {value} (mean ± std)": [f"{m:.4g} ± {s:.2g}" for m, s in zip(ranking.final_mean, ranking.final_std)],
        f"evals to {share}": ranking.evals_to_target.round(1),
        f"runs reaching {share}": [f"{r}/{n}" for r, n in zip(ranking.reached, ranking.runs)],
    })
