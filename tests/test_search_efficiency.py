"""``benchmarks/search_efficiency.py``: the best hypervolume an eps-constrained search can reach with its grid."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.pareto import hypervolume, pareto_mask

from .conftest import load_benchmark


def test_grid_optimum_is_the_cheapest_arch_under_each_eps() -> None:
    module = load_benchmark("search_efficiency")
    module.EPS_GRID = [0.3, 0.6]
    # (loss, GMACs): the cheapest under 0.3 is (0.25, 2.0), under 0.6 it is (0.5, 1.0); (0.9, 0.5) is on the front
    points = np.array([[0.0, 4.0], [0.25, 2.0], [0.28, 3.0], [0.5, 1.0], [0.9, 0.5]])
    reference = (1.0, 5.0)
    true_hv = hypervolume(points[pareto_mask(points)], reference)
    expected = hypervolume(np.array([[0.25, 2.0], [0.5, 1.0]]), reference) / true_hv
    assert module.grid_optimum(points, reference, true_hv) == pytest.approx(expected)
    assert 0 < expected < 1
    module.EPS_GRID = [0.01]  # no arch under it: nothing picked, nothing dominated
    assert module.grid_optimum(points[1:], reference, true_hv) == 0.0
