"""``benchmarks/_comparisons.py``: the proxy and BO comparisons in ``ablations.md``, read from their result files."""
from __future__ import annotations

import json
from pathlib import Path

from .conftest import load_benchmark


def write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data))


def test_sections_state_the_measured_numbers_and_draw_their_figures(tmp_path: Path) -> None:
    module = load_benchmark("_comparisons")
    figures = tmp_path / "ablations"
    assert module.proxy_section(tmp_path, figures) is None and module.bo_section(tmp_path, figures, ["bo"]) is None
    runs = [{"arch_id": a, "gmacs": g, "psnr_y": p} for a, g, p in
            [("a", 3.0, 28.0), ("b", 1.0, 27.5), ("c", 0.5, 27.3), ("c", 0.5, 27.5)]]  # c: two seeds, mean 27.4
    write(tmp_path / "proxy_validity.json", {
        "command": "python benchmarks/proxy_validity.py score", "runs": runs, "references": {"bicubic": 27.0},
        "settings": {"adapt_steps": 100, "onestep_steps": 500},
        "proxies": {module.DEFAULT_PROXY: {"a": 0.0, "b": 0.4, "c": 1.0}},
        "correlations": [{"proxy": module.DEFAULT_PROXY, "kendall_tau": 1.0}, {"proxy": "GMACs", "kendall_tau": 0.5}]})
    proxy = module.proxy_section(tmp_path, figures)
    assert proxy.data["psnr_y"] == [28.0, 27.5, 27.4]
    assert "Kendall tau 1.000 (GMACs alone: 0.500)" in proxy.answer and "by 0.40 to 1.00 dB" in proxy.answer
    curve = [0.5] * 49 + [0.9] * 51
    write(tmp_path / "search_efficiency.json", {"runs": [{"command": "first random"}, {"command": "then bo"}], "spaces": {
        "space_a": {"archs": 64, "strategies": [
            {"strategy": "random", "seeds": 10, "budget": 100, "evals_to_95_median": float("inf"), "hv@50_mean": 0.9,
             "hv@50_ci95": [0.8, 0.95], "curve_mean": curve},
            {"strategy": "bo", "seeds": 10, "budget": 100, "evals_to_95_median": 20.0, "hv@50_mean": 0.975,
             "hv@50_ci95": [0.97, 0.98], "curve_mean": curve}]}}})
    bo = module.bo_section(tmp_path, figures, ["bo"])
    assert "random needs a median >100 evaluations" in bo.answer and "`bo` median 20 evaluations" in bo.answer
    assert "HV@50 0.975" in bo.answer and bo.command == "then bo"
    assert (figures / "proxy_validity.png").stat().st_size > 0 and (figures / "search_efficiency.png").stat().st_size > 0
    assert module.markdown(bo)[2] == "![search_efficiency](ablations/search_efficiency.png)"
