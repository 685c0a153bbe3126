"""Analysis: tidy frames, hypervolume curves, figures, tables, and the report / compare commands on real searches."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.figures import arch_diagram, choice_heatmap, hypervolume_plot, pareto_plot
from analysis.frames import (
    choice_frequencies,
    hypervolume_curves,
    load_runs,
    pareto_front,
    reference_point,
    strategy_ranking,
    summarize_curves,
    teacher_cost,
    with_evaluations,
)
from analysis.pareto import hypervolume
from analysis.report import build_comparison, build_report, find_stages
from analysis.tables import (
    format_value,
    ranking_table,
    to_latex,
    to_markdown,
    write_table,
)
from evaluators.cost import CostEvaluator
from evaluators.distillation import DistillationEvaluator, ValidationSet
from evaluators.latency import LatencyEvaluator
from tocsr_nas.cli import main
from tocsr_nas.errors import ConfigError
from tocsr_nas.profiling.cost_table import build_cost_table
from tocsr_nas.profiling.latency import LatencyTarget, build_latency_table
from tocsr_nas.search import SearchConfig, SearchRunner
from tocsr_nas.search.components import validation_latents
from tocsr_nas.search.config import ValidationConfig
from tocsr_nas.supernet import Supernet

GAUSSIAN = {"latents": {"source": "gaussian"}, "count": 4, "batch_size": 2}
ARCHS = ["down:R=T,A=I;up:R=slim(width=0.5),A=T", "down:R=I,A=I;up:R=T,A=T", "down:R=I,A=lin;up:R=T,A=T"]


def synthetic_trials() -> pd.DataFrame:
    """Two strategies x two seeds, five trials each (one infeasible), with losses and GMACs on a known grid."""
    rows = []
    for s, strategy in enumerate(["random", "bo"]):
        for seed in range(2):
            for i in range(5):
                state = "infeasible" if i == 2 else "complete"
                rows.append({"run": f"{strategy}/seed{seed}", "strategy": strategy, "seed": seed, "trial_id": i,
                             "arch": ARCHS[i % 3], "state": state, "loss": np.nan if state == "infeasible" else 1.0 - 0.2 * i + 0.05 * (s + seed),
                             "gmacs": 0.1 * (i + 1), "params_m": 1.0 + i, "macs_ratio": 2.0 / (0.1 * (i + 1)),
                             "params_ratio": 10.0 / (1.0 + i)})
    frame = pd.DataFrame(rows)
    return pd.concat([with_evaluations(g) for _, g in frame.groupby("run", sort=False)], ignore_index=True)


# -- frames ---------------------------------------------------------------------------------------------------------
def test_evaluations_skip_infeasible_and_teacher_cost_from_ratios():
    trials = synthetic_trials()
    run = trials[trials.run == "random/seed0"]
    assert run.evaluation.tolist() == [1, 2, 2, 3, 4]
    assert teacher_cost(trials, "gmacs") == pytest.approx(2.0) and teacher_cost(trials, "params_m") == pytest.approx(10.0)
    assert teacher_cost(trials, "mse") is None


def test_hypervolume_curves_grow_to_the_runs_hypervolume():
    trials = synthetic_trials()
    reference = reference_point(trials)
    curves = hypervolume_curves(trials, reference, true_front=pd.DataFrame({"loss": [0.0], "gmacs": [0.05]}))
    for run, group in curves.groupby("run"):
        assert group.evaluation.tolist() == [1, 2, 3, 4]
        assert (np.diff(group.hypervolume) >= 0).all()
        done = trials[(trials.run == run) & (trials.state == "complete")]
        assert group.hypervolume.iloc[-1] == pytest.approx(hypervolume(done[["loss", "gmacs"]].to_numpy(), reference))
    best = hypervolume([[0.0, 0.05]], reference)
    assert np.allclose(curves.ratio, curves.hypervolume / best) and (curves.ratio <= 1).all()
    summary = summarize_curves(curves)
    last = summary[(summary.strategy == "bo") & (summary.evaluation == 4)].iloc[0]
    finals = curves[(curves.strategy == "bo") & (curves.evaluation == 4)].hypervolume
    assert last["mean"] == pytest.approx(finals.mean()) and last["min"] == finals.min() and last["runs"] == 2


def test_strategy_ranking_orders_by_final_hypervolume():
    curves = pd.DataFrame({"run": ["a0"] * 3 + ["a1"] * 3 + ["b0"] * 3, "strategy": ["a"] * 6 + ["b"] * 3,
                           "seed": [0] * 3 + [1] * 3 + [0] * 3, "evaluation": [1, 2, 3] * 3,
                           "hypervolume": [0.1, 0.5, 1.0, 0.2, 0.96, 0.98, 0.1, 0.2, 0.3]})
    ranking = strategy_ranking(curves)
    assert ranking.strategy.tolist() == ["a", "b"] and ranking["rank"].tolist() == [1, 2]
    a = ranking.iloc[0]
    assert a.final_mean == pytest.approx(0.99) and a.final_std == pytest.approx(0.01)
    assert a.evals_to_target == pytest.approx(2.5) and a.reached == 2  # 95% of the best final (1.0)
    assert np.isnan(ranking.iloc[1].evals_to_target) and ranking.iloc[1].reached == 0
    table = ranking_table(ranking)
    assert table.iloc[0, 2] == "0.99 ± 0.01" and table["runs reaching 95%"].tolist() == ["2/2", "0/1"]


def test_choice_frequencies_per_kind():
    table = choice_frequencies(ARCHS)
    assert table.loc["down:R", "I"] == pytest.approx(2 / 3) and table.loc["down:A", "lin"] == pytest.approx(1 / 3)
    assert np.isnan(table.loc["down:A", "slim(width=0.5)"])  # a resnet candidate, not a transformer one
    assert np.allclose(table.sum(axis=1), 1.0)
    given = choice_frequencies(ARCHS[:1], {"down:R": ["T", "I"], "down:A": ["T", "I"], "up:R": ["T", "slim(width=0.5)"],
                                           "up:A": ["T"]})
    assert given.loc["up:R", "T"] == 0.0 and given.loc["up:R", "slim(width=0.5)"] == 1.0
    assert np.isnan(given.loc["up:R", "I"])  # not a candidate of that decision


# -- tables ---------------------------------------------------------------------------------------------------------
def test_table_writers(tmp_path):
    frame = pd.DataFrame({"name": ["a_b", "c|d"], "loss": [0.123456, np.nan], "n": [3, 4]})
    assert to_markdown(frame).splitlines() == ["| name | loss | n |", "| :--- | ---: | ---: |",
                                               "| a_b | 0.1235 | 3 |", r"| c\|d |  | 4 |"]
    latex = to_latex(frame, caption="50% done", label="tab:x")
    assert r"\begin{tabular}{lrr}" in latex and r"a\_b & 0.1235 & 3 \\" in latex and r"\caption{50\% done}" in latex
    assert format_value(np.float32(2.5)) == "2.5" and format_value(np.int64(7)) == "7" and format_value(None) == ""
    paths = write_table(frame, tmp_path / "sub" / "t", caption="t")
    assert sorted(paths) == ["csv", "md", "tex"] and all(p.is_file() for p in paths.values())
    assert pd.read_csv(paths["csv"]).loss.iloc[0] == pytest.approx(0.123456)
    with pytest.raises(ValueError, match="unknown table format"):
        write_table(frame, tmp_path / "t", formats=("xlsx",))


# -- figures --------------------------------------------------------------------------------------------------------
def test_figures_write_pngs_with_legends(tmp_path):
    trials = synthetic_trials()
    saved = pareto_plot(trials, tmp_path / "p.png", true_front=pd.DataFrame({"loss": [0.1, 0.0], "gmacs": [0.1, 0.5]}),
                        anchors={"reference": (0.3, 0.6)})
    assert saved.path.stat().st_size > 0 and saved.xlabels == ("GMACs",)
    assert {"true front", "teacher"} <= set(saved.legend) and any(t.startswith("random (") for t in saved.legend)
    assert {"teacher", "reference"} <= set(saved.texts)
    params = pareto_plot(trials, tmp_path / "q.png", cost="params_m")
    assert params.xlabels == ("parameters (M)",)

    curves = hypervolume_curves(trials, reference_point(trials))
    hv = hypervolume_plot(curves, tmp_path / "hv.png", band="std")
    assert hv.legend == ("random (n=2)", "bo (n=2)") and hv.ylabels == ("hypervolume",) and hv.path.is_file()
    with pytest.raises(ValueError, match="band"):
        hypervolume_plot(curves, tmp_path / "x.png", band="iqr")

    heat = choice_heatmap(choice_frequencies(pareto_front(trials).arch), tmp_path / "h.png")
    assert heat.xlabels == ("resnet candidate", "transformer candidate") and "100%" in heat.texts

    drawn = arch_diagram("down:R=T,A=I;mid:R=dws(expansion=2,kernel=3);up:R=I,A=lin", tmp_path / "a.png", title="w")
    assert drawn.title == "w" and drawn.legend == ("teacher kept", "skipped", "surrogate")
    assert {"down", "mid", "up", "resnet: dws(expansion=2,kernel=3)", "transformer: lin"} <= set(drawn.texts)
    assert arch_diagram("a:R=T;b:A=I", tmp_path / "row.png").path.is_file()  # not down/mid/up: a row


# -- report and compare on real searches ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def evaluators(micro_teacher, micro_space):
    """The cost table and the distillation evaluator of the micro space."""
    table = build_cost_table(micro_teacher, micro_space, ptflops=False, progress=False)
    latents = validation_latents(micro_teacher, ValidationConfig(**GAUSSIAN), 16)
    return table, DistillationEvaluator(Supernet(micro_teacher, micro_space),
                                        ValidationSet.build(micro_teacher, latents, batch_size=2))


@pytest.fixture(scope="module")
def latency_search(micro_teacher, micro_space, evaluators, tmp_path_factory):
    """A tiny search minimising (loss, latency_ms) with a measured latency table (one timed round per call)."""
    table, distillation = evaluators
    latency = build_latency_table(micro_teacher, micro_space, LatencyTarget(warmup=1, repeats=1))
    config = SearchConfig(space=str(micro_space.source), validation=GAUSSIAN, strategy="random", seed=0, budget=5,
                          eps=[0.9], objectives=["loss", "latency_ms"], evaluators=["cost", "latency", "distillation"])
    folder = tmp_path_factory.mktemp("latency") / "search"
    SearchRunner(config, folder, space=micro_space, table=table, cheap=[CostEvaluator(table), LatencyEvaluator(latency)],
                 expensive=[distillation]).run(progress=False)
    return folder, latency


@pytest.fixture(scope="module")
def searches(micro_space, evaluators, tmp_path_factory):
    """Four tiny searches on the micro space (random and evolution, seeds 0 and 1, 6 evaluations each)."""
    table, distillation = evaluators
    root = tmp_path_factory.mktemp("searches")
    for strategy in ("random", "evolution"):
        for seed in (0, 1):
            config = SearchConfig(space=str(micro_space.source), validation=GAUSSIAN, strategy=strategy, seed=seed,
                                  budget=6, eps=[0.9, 0.01], strategy_options={"population_size": 3, "sample_size": 2}
                                  if strategy == "evolution" else {})
            SearchRunner(config, root / f"{strategy}-{seed}", space=micro_space, table=table, cheap=[CostEvaluator(table)],
                         expensive=[distillation]).run(progress=False)
    return root


def test_load_runs_labels_strategies_and_seeds(searches):
    trials = load_runs([searches])
    assert sorted(trials.run.unique()) == ["evolution/seed0", "evolution/seed1", "random/seed0", "random/seed1"]
    assert trials.groupby("run").evaluation.max().tolist() == [6, 6, 6, 6]


def test_report_of_a_search_folder(searches, tmp_path, capsys):
    folder = searches / "random-0"
    anchor = load_runs([folder]).arch.iloc[0]
    assert main(["report", str(folder), "--out", str(tmp_path / "r"), "--anchor", f"first={anchor}",
                 "--anchor", "never=down:R=I,A=I;mid:R=I,A=I;up:R=I,A=I"]) == 0
    assert "report.md" in capsys.readouterr().out
    text = (tmp_path / "r" / "report.md").read_text()
    for png in ("pareto_gmacs.png", "pareto_params.png", "choices.png", "winner.png", "hypervolume.png"):
        assert f"]({png})" in text and (tmp_path / "r" / png).is_file()
    assert "Missing stages: surrogates, sr." in text and "Anchors not evaluated in this search: never." in text
    assert "latency" not in text and not (tmp_path / "r" / "pareto_latency.png").exists()  # no latency evaluator
    assert "latency_ms" not in pd.read_csv(tmp_path / "r" / "tables" / "pareto.csv")
    assert "(no complete trial reaches this eps)" in text  # eps 0.01 is out of reach
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    winner = summary["winner"]
    assert winner["loss"] <= 0.9 and winner["macs_ratio"] > 1 and summary["teacher"]["gmacs"] > winner["gmacs"]
    assert {"pareto.csv", "pareto.md", "pareto.tex", "winner.csv"} <= {p.name for p in (tmp_path / "r" / "tables").iterdir()}


def test_report_of_an_experiment_folder(searches, tmp_path):
    run = tmp_path / "runs" / "x"
    (run / "search").mkdir(parents=True)
    for name in ("trials.jsonl", "strategy_state.json"):
        (run / "search" / name).write_bytes((searches / "evolution-1" / name).read_bytes())
    (run / "evaluate").mkdir()
    pd.DataFrame({"model": ["teacher", "winner"], "psnr": [28.1, 27.5]}).to_csv(run / "evaluate" / "summary.csv", index=False)
    assert find_stages(run).missing == ["surrogates"]
    text = build_report(run, load_space=False).read_text()
    assert "Missing stages: surrogates." in text and "## Super-resolution" in text and "| winner | 27.5 |" in text
    assert (run / "report" / "tables" / "sr_summary.tex").is_file()


def test_report_refuses_an_empty_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no stage output here" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not a folder"):
        build_report(tmp_path / "absent")


def test_compare_two_strategies_two_seeds(searches, tmp_path, capsys):
    front = tmp_path / "front.csv"
    trials = load_runs([searches])
    pareto_front(trials)[["loss", "gmacs"]].to_csv(front, index=False)
    runs = [str(searches / f"{s}-{seed}") for s in ("random", "evolution") for seed in (0, 1)]
    assert main(["compare", *runs, "--out", str(tmp_path / "c"), "--true-front", str(front), "--band", "std"]) == 0
    text = (tmp_path / "c" / "compare.md").read_text()
    assert "4 searches, 2 strategies" in text and "](hypervolume.png)" in text and "](hypervolume_ratio.png)" in text
    assert "latency" not in text and not (tmp_path / "c" / "pareto_latency.png").exists()  # no latency evaluator
    ranking = pd.read_csv(tmp_path / "c" / "tables" / "ranking.csv")
    assert sorted(ranking.strategy) == ["evolution", "random"] and ranking["rank"].tolist() == [1, 2]
    curves = pd.read_csv(tmp_path / "c" / "tables" / "hypervolume_curves.csv")
    assert (curves.ratio <= 1 + 1e-9).all() and len(curves) == 4 * 6
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"loss": [0.1]}).to_csv(bad, index=False)
    assert main(["compare", *runs, "--out", str(tmp_path / "d"), "--true-front", str(bad)]) == 2
    assert "missing column(s) ['gmacs']" in capsys.readouterr().err


# -- latency in pareto, report and compare --------------------------------------------------------------------------
def test_pareto_of_a_latency_search_is_loss_vs_latency(latency_search, capsys):
    folder, latency = latency_search
    assert main(["pareto", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Pareto set of loss vs latency_ms:")
    assert "latency_ms" in out.splitlines()[1] and "latency_ratio" in out.splitlines()[1]
    front = pareto_front(load_runs([folder]), ("loss", "latency_ms"))
    assert len(out.splitlines()) == 2 + len(front)  # the title, the header, one row per arch on the latency front
    column = out.splitlines()[1].split().index("latency_ms")
    printed = sorted(float(line.split()[column]) for line in out.splitlines()[2:])
    assert printed == pytest.approx(sorted(front.latency_ms), abs=0.01)


def test_report_of_a_latency_search_shows_latency(latency_search, tmp_path):
    folder, latency = latency_search
    text = build_report(folder, tmp_path / "r", load_space=False).read_text()
    assert "](pareto_latency.png)" in text and "](pareto_gmacs.png)" in text
    assert f"{latency.teacher_ms:.4g} ms per UNet call" in text and "`latency_ratio` how many times faster" in text
    drawn = pareto_plot(load_runs([folder]), tmp_path / "check.png", cost="latency_ms")
    assert drawn.xlabels == ("latency per UNet call (ms)",) and "teacher" in drawn.texts  # teacher from the ratios
    trials = load_runs([folder])
    winner = pd.read_csv(tmp_path / "r" / "tables" / "winner.csv").iloc[0]
    feasible = trials[(trials.state == "complete") & (trials.loss <= 0.9)]
    assert winner.latency_ms == pytest.approx(feasible.latency_ms.min())  # the pick is the fastest, not the fewest GMACs
    assert winner.latency_ratio == pytest.approx(latency.teacher_ms / winner.latency_ms)
    fast = pd.read_csv(tmp_path / "r" / "tables" / "pareto_latency.csv")
    assert list(fast.columns[:5]) == ["trial_id", "loss", "gmacs", "params_m", "latency_ms"]
    assert len(fast) == len(pareto_front(trials, ("loss", "latency_ms")))
    assert "latency_ms" in pd.read_csv(tmp_path / "r" / "tables" / "pareto.csv")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["teacher"]["latency_ms"] == pytest.approx(latency.teacher_ms)
    assert summary["winner"]["latency_ratio"] == pytest.approx(winner.latency_ratio)


def test_compare_with_a_latency_search(latency_search, searches, tmp_path):
    folder, latency = latency_search
    text = build_comparison([folder, searches / "random-0"], tmp_path / "c").read_text()
    assert "](pareto_latency.png)" in text and (tmp_path / "c" / "pareto_latency.png").stat().st_size > 0
    header = next(line for line in text.splitlines() if line.startswith("| run"))
    assert "teacher latency (ms)" in header and "fastest on front (ms)" in header
    row = next(line for line in text.splitlines() if str(folder) in line)
    assert f"{latency.teacher_ms:.4g}" in row
