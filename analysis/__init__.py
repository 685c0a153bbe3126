"""Analysis of searches: Pareto sets and hypervolume (``pareto``), tidy frames and curves (``frames``), figures
(``figures``), tables (``tables``) and Markdown reports (``report``).

Names are re-exported lazily, so importing :mod:`analysis.pareto` (as the search does) loads neither matplotlib nor
the search store.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "pareto": ("pareto_mask", "hypervolume", "hypervolume_ratio"),
    "frames": ("load_runs", "search_folders", "pareto_front", "reference_point", "hypervolume_curves",
               "summarize_curves", "strategy_ranking", "choice_frequencies", "teacher_cost", "read_true_front"),
    "figures": ("Saved", "pareto_plot", "hypervolume_plot", "choice_heatmap", "arch_diagram"),
    "tables": ("to_markdown", "to_latex", "write_table", "pareto_table", "ranking_table"),
    "report": ("build_report", "build_comparison", "find_stages"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [  # noqa: RUF022 (grouped by module, as in _EXPORTS)
    "pareto_mask", "hypervolume", "hypervolume_ratio", "load_runs", "search_folders", "pareto_front",
    "reference_point", "hypervolume_curves", "summarize_curves", "strategy_ranking", "choice_frequencies",
    "teacher_cost", "read_true_front", "Saved", "pareto_plot", "hypervolume_plot", "choice_heatmap", "arch_diagram",
    "to_markdown", "to_latex", "write_table", "pareto_table", "ranking_table", "build_report", "build_comparison",
    "find_stages",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
