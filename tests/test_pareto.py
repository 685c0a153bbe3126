"""Pareto masks and hypervolumes against hand-computed values and brute force."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.pareto import hypervolume, hypervolume_ratio, pareto_mask


def test_pareto_mask_2d_keeps_duplicates_and_drops_dominated() -> None:
    points = [[1, 5], [2, 3], [2, 3], [3, 4], [4, 1], [5, 1]]
    assert pareto_mask(points).tolist() == [True, True, True, False, True, False]


def test_pareto_mask_3d_matches_brute_force() -> None:
    points = np.random.default_rng(0).random((60, 3))
    expected = [not any(np.all(q <= p) and np.any(q < p) for q in points) for p in points]
    assert pareto_mask(points).tolist() == expected


def test_hypervolume_2d_by_hand() -> None:
    # boxes to (4, 4): [1,4]x[3,4] + [2,4]x[2,3] + [3,4]x[1,2] = 3 + 2 + 1
    points = [[1, 3], [2, 2], [3, 1], [3, 3], [5, 0]]  # (3, 3) dominated; (5, 0) beyond the reference
    assert hypervolume(points, [4, 4]) == pytest.approx(6.0)
    assert hypervolume([[4, 1]], [4, 4]) == 0.0
    assert hypervolume(np.empty((0, 2)), [4, 4]) == 0.0


def test_hypervolume_3d_uses_pymoo_and_matches_monte_carlo() -> None:
    rng = np.random.default_rng(1)
    points = rng.random((8, 3))
    samples = rng.random((100_000, 3))
    dominated = (points[None, :, :] <= samples[:, None, :]).all(-1).any(-1)
    assert hypervolume(points, [1, 1, 1]) == pytest.approx(dominated.mean(), abs=0.01)


def test_hypervolume_ratio() -> None:
    front = [[1, 3], [2, 2], [3, 1]]
    assert hypervolume_ratio(front, front, [4, 4]) == pytest.approx(1.0)
    assert hypervolume_ratio([[2, 2]], front, [4, 4]) == pytest.approx(4 / 6)
    with pytest.raises(ValueError):
        hypervolume_ratio([[1, 1]], [[5, 5]], [4, 4])


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError):
        pareto_mask([1, 2, 3])
    with pytest.raises(ValueError):
        hypervolume([[1, 2]], [1, 2, 3])
