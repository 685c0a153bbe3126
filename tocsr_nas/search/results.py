"""Reading a finished (or running) search: its Pareto set, the pick at an epsilon, and what extraction builds from."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analysis.pareto import pareto_mask

from ..config_io import validate
from ..errors import ConfigError
from .config import SearchConfig
from .store import read_header, read_trials


def search_objectives(folder: str | Path) -> tuple[str, str]:
    """The (loss, cost) metrics a search minimised (``loss``, ``gmacs`` for folders that do not record them)."""
    loss, cost = (read_header(folder).get("config") or {}).get("objectives") or ("loss", "gmacs")
    return str(loss), str(cost)


def pareto_trials(folder: str | Path, *, loss: str | None = None, cost: str | None = None) -> pd.DataFrame:
    """Complete trials on the Pareto front of (loss, cost), cheapest first; by default the search's objectives."""
    frame = read_trials(folder)
    complete = frame[frame.state == "complete"] if len(frame) else frame
    if complete.empty:
        return complete
    default_loss, default_cost = search_objectives(folder)
    loss, cost = loss or default_loss, cost or default_cost
    mask = pareto_mask(complete[[loss, cost]].to_numpy(dtype=float))
    return complete[mask].sort_values(cost).reset_index(drop=True)


def pick_trial(folder: str | Path, eps: float | None = None) -> pd.Series:
    """The cheapest complete trial with ``loss <= eps`` (the search's first epsilon by default), cheapest in the
    search's cost objective (GMACs, or latency for a search that minimised ``latency_ms``)."""
    if eps is not None and not (math.isfinite(eps) and eps > 0):
        raise ConfigError(f"epsilon {eps} must be a positive loss bound", key="eps")
    eps = search_config(folder).eps[0] if eps is None else eps
    frame = read_trials(folder)
    complete = frame[frame.state == "complete"] if len(frame) and "loss" in frame else frame.iloc[:0]
    feasible = complete[complete.loss <= eps] if len(complete) else complete
    if feasible.empty:
        best = f"best loss {complete.loss.min():.4g}" if len(complete) else "no complete trial yet"
        raise ConfigError(f"no trial reaches loss <= {eps} ({best})", source=folder, key="eps")
    cost = search_objectives(folder)[1]
    return feasible.sort_values([cost if cost in feasible else "gmacs", "loss"]).iloc[0]


def search_config(folder: str | Path) -> SearchConfig:
    """The config a search folder was run with (from its trials log header)."""
    return validate(SearchConfig, read_header(folder).get("config"), source=Path(folder) / "trials.jsonl")


def search_surrogates(folder: str | Path) -> str | None:
    """The surrogate folder a search measured with, checked to still hold the same weights (None: untrained)."""
    from ..distill.store import surrogates_hash  # noqa: PLC0415 (torch only here)

    config = search_config(folder)
    if config.surrogates is None:
        return None
    recorded = read_header(folder).get("provenance", {}).get("surrogates_hash")
    current = surrogates_hash(config.surrogates)
    if recorded != current:
        raise ConfigError(f"surrogates changed since the search (hash {recorded} -> {current}): its trials no longer "
                          "describe them; search again", source=config.surrogates)
    return config.surrogates


def check_extract_target(out: str | Path, *, overwrite: bool) -> None:
    """Refuse an existing ``out`` unless ``overwrite`` and it is a compact-UNet folder (replaced atomically later)."""
    out = Path(out)
    if not out.exists():
        if out.parent.exists() and not out.parent.is_dir():
            raise ConfigError("the parent is not a folder", source=out)
        return
    if not overwrite:
        raise ConfigError("exists: pass --overwrite to replace a compact-UNet folder, or choose a new --out",
                          source=out)
    from ..compact import is_compact_folder  # noqa: PLC0415

    if not is_compact_folder(out):
        raise ConfigError("exists and is not a compact-UNet folder: --overwrite replaces only those", source=out)


