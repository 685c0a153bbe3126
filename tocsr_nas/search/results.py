"""Reading a finished (or running) search: its Pareto set and the pick at an epsilon."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.pareto import pareto_mask

from ..errors import ConfigError
from .store import read_header, read_trials


def pareto_trials(folder: str | Path, *, loss: str = "loss", cost: str = "gmacs") -> pd.DataFrame:
    """Complete trials on the Pareto front of (loss, cost), cheapest first."""
    frame = read_trials(folder)
    complete = frame[frame.state == "complete"] if len(frame) else frame
    if complete.empty:
        return complete
    mask = pareto_mask(complete[[loss, cost]].to_numpy(dtype=float))
    return complete[mask].sort_values(cost).reset_index(drop=True)


def pick_trial(folder: str | Path, eps: float | None = None) -> pd.Series:
    """The cheapest complete trial with ``loss <= eps`` (the search's first epsilon by default)."""
    eps = read_header(folder)["config"]["eps"][0] if eps is None else eps
    frame = read_trials(folder)
    feasible = frame[(frame.state == "complete") & (frame.loss <= eps)] if len(frame) else frame
    if feasible.empty:
        best = frame[frame.state == "complete"].loss.min() if len(frame) else float("nan")
        raise ConfigError(f"no trial reaches loss <= {eps} (best loss {best:.4g})", source=folder, key="eps")
    return feasible.sort_values(["gmacs", "loss"]).iloc[0]
