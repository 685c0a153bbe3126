"""The quickstart's SR rows: other models (the shipped x4-compact in the quickstart) beside the run's own, gains in the report."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.report import build_report
from tocsr_nas.experiments import resolve

from .badinput import assert_refused

QUICKSTART = str(Path(__file__).resolve().parents[1] / "experiments" / "quickstart.yaml")


def test_quickstart_compares_with_the_shipped_model():
    (_, config), = resolve(QUICKSTART, [])
    assert config.evaluate.models == ["x4-compact"]
    assert config.onestep.loop.num_threads == config.sr.loop.num_threads == config.surrogates.num_threads == 2  # sized for 2 cores


@pytest.mark.parametrize("override, match", [
    ("evaluate.models=[no-such-model]", "no-such-model"),
    ("sr.scale=2", "x4"),  # x4-compact cannot be compared with an x2 run
])
def test_bad_evaluate_models_refused(tmp_path, capsys, override, match):
    assert_refused(["run", QUICKSTART, override, "--runs-dir", str(tmp_path)], tmp_path, capsys, match=match)


def test_report_shows_gains_over_bicubic(tmp_path):
    (tmp_path / "evaluate").mkdir()
    pd.DataFrame([
        {"dataset": "a", "method": "bicubic", "images": 2, "psnr_y": 28.0, "ssim_y": 0.8},
        {"dataset": "a", "method": "vae-recon", "images": 2, "psnr_y": 40.0, "ssim_y": 0.9},
        {"dataset": "a", "method": "onestep", "images": 2, "psnr_y": 28.5, "ssim_y": 0.81},
        {"dataset": "a", "method": "x4-compact", "images": 2, "psnr_y": 28.75, "ssim_y": 0.82},
        {"dataset": "b", "method": "bicubic", "images": 1, "psnr_y": 20.0, "ssim_y": 0.5},
        {"dataset": "b", "method": "onestep", "images": 1, "psnr_y": 19.5, "ssim_y": 0.5},
    ]).to_csv(tmp_path / "evaluate" / "summary.csv", index=False)
    report = build_report(tmp_path).read_text()
    gains = report.split("PSNR-Y gain over bicubic on the same images")[1]
    assert "| a | onestep | 28.5 | 0.5 |" in gains and "| a | x4-compact | 28.75 | 0.75 |" in gains
    assert "| b | onestep | 19.5 | -0.5 |" in gains and "vae-recon | 40" not in gains.split("\n\n")[1]
