"""benchmarks/proxy_validity.py's statistics (fast: numbers only, no training)."""
from __future__ import annotations

import numpy as np
import scipy.stats

from .conftest import load_benchmark


def test_resolvable_tau_counts_only_pairs_beyond_the_noise() -> None:
    resolvable_tau = load_benchmark("proxy_validity").resolvable_tau
    psnr = np.array([27.0, 27.01, 27.5, 28.0])
    # the 27.0/27.01 pair is within the margin, so its (discordant) order does not count
    score = np.array([2.0, 1.0, 3.0, 4.0])
    assert resolvable_tau(score, psnr, margin=0.05) == (1.0, 5)
    tau, pairs = resolvable_tau(score, psnr, margin=0.0)
    assert pairs == 6 and np.isclose(tau, 4 / 6)
    assert resolvable_tau(-score, psnr, margin=0.05) == (-1.0, 5)


def test_bootstrap_taus_uses_the_same_resamples_for_every_score() -> None:
    bootstrap_taus = load_benchmark("proxy_validity").bootstrap_taus
    rng = np.random.default_rng(1)
    psnr = rng.normal(size=12)
    scores = {"a": psnr + rng.normal(scale=0.5, size=12), "same": None, "reversed": -psnr}
    scores["same"] = scores["a"].copy()
    boot = bootstrap_taus(scores, psnr, reps=50)
    assert np.array_equal(boot["a"], boot["same"], equal_nan=True)
    assert np.allclose(boot["reversed"], -1.0)
    assert abs(np.nanmedian(boot["a"]) - scipy.stats.kendalltau(scores["a"], psnr)[0]) < 0.25
