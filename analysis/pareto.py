"""Pareto sets and hypervolume for minimisation problems (pure functions on ``(N, M)`` arrays of objectives)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_points(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"expected an (N, M) array of objective values, got shape {array.shape}")
    return array


def pareto_mask(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Which points no other point dominates (all objectives minimised).

    A point is dominated when another is ``<=`` in every objective and ``<`` in one; identical points do not
    dominate each other, so duplicates on the front are all kept.

    Args:
        points: shape ``(N, M)``.

    Returns:
        Boolean mask, shape ``(N,)``.
    """
    points = _as_points(points)
    mask = np.ones(len(points), dtype=bool)
    for i, point in enumerate(points):
        dominated_by = np.all(points <= point, axis=1) & np.any(points < point, axis=1)
        mask[i] = not dominated_by.any()
    return mask


def hypervolume(points: np.ndarray | Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The volume dominated by ``points`` and bounded by ``reference`` (minimisation).

    Exact sweep for two objectives; pymoo's HV indicator for more. Points not strictly better than the reference in
    every objective contribute nothing.

    Args:
        points: shape ``(N, M)``.
        reference: shape ``(M,)``, e.g. the worst acceptable loss and cost.
    """
    points = _as_points(points)
    reference = np.asarray(reference, dtype=np.float64)
    if points.shape[1] != len(reference):
        raise ValueError(f"reference has {len(reference)} objectives, points have {points.shape[1]}")
    points = points[np.all(points < reference, axis=1)]
    if len(points) == 0:
        return 0.0
    if points.shape[1] != 2:
        from pymoo.indicators.hv import HV  # noqa: PLC0415

        return float(HV(ref_point=reference)(points))
    front = points[pareto_mask(points)]
    front = front[np.lexsort((front[:, 1], front[:, 0]))]  # x ascending, so y descends along the front
    volume, y_above = 0.0, reference[1]
    for x, y in front:
        if y < y_above:
            volume += (reference[0] - x) * (y_above - y)
            y_above = y
    return float(volume)


Points = np.ndarray | Sequence[Sequence[float]]


def hypervolume_ratio(points: Points, true_front: Points, reference: Sequence[float]) -> float:
    """``hypervolume(points) / hypervolume(true_front)`` under the same reference (1.0 = the true front found)."""
    best = hypervolume(true_front, reference)
    if best <= 0:
        raise ValueError("the true front dominates no volume below the reference point")
    return hypervolume(points, reference) / best
