"""Search configs name their evaluators, objectives and constraints; the runner assembles them generically."""
from __future__ import annotations

import json

import pytest

from strategies import available_strategies
from tocsr_nas.cli import main
from tocsr_nas.config_io import validate
from tocsr_nas.errors import ConfigError
from tocsr_nas.search import SearchConfig, read_trials
from tocsr_nas.search.components import build_runner

from .badinput import assert_refused

GAUSSIAN = {"latents": {"source": "gaussian"}, "count": 4, "batch_size": 2}
FAST_LATENCY = {"name": "latency", "options": {"warmup": 1, "repeats": 3}}


def names(config: SearchConfig) -> list[str]:
    return [spec.name for spec in config.effective_evaluators]


def test_default_evaluators_follow_objectives_and_constraints():
    assert names(SearchConfig()) == ["cost", "distillation"]
    assert names(SearchConfig(max_latency_ms=5.0)) == ["cost", "latency", "distillation"]
    assert names(SearchConfig(objectives=["loss", "latency_ms"])) == ["cost", "latency", "distillation"]
    assert SearchConfig(max_gmacs=1.0, max_latency_ms=2.0).constraints == {"gmacs": 1.0, "latency_ms": 2.0}
    explicit = SearchConfig(evaluators=["cost", {"name": "latency", "options": {"threads": 2}}, "distillation"])
    assert explicit.effective_evaluators[1].options == {"threads": 2}


@pytest.mark.parametrize(("fields", "message"), [
    ({"evaluators": ["cost", "fid"]}, "unknown evaluator 'fid' (allowed: cost, distillation, generation, latency, sr-proxy)"),
    ({"evaluators": ["cost", "distillation"], "max_latency_ms": 3}, "needs the 'latency' evaluator"),
    ({"evaluators": ["cost", "cost"]}, "listed twice"),
    ({"objectives": ["loss"]}, "two distinct metrics"),
    ({"objectives": ["loss", "loss"]}, "two distinct metrics"),
    ({"max_latency_ms": -1}, "max_latency_ms"),
])
def test_bad_evaluator_config_is_one_line_error(fields, message):
    with pytest.raises(ConfigError) as info:
        validate(SearchConfig, fields, source="search.yaml")
    text = str(info.value)
    assert message in text and "\n" not in text and "search.yaml" in text


def test_bad_search_flags_are_refused_before_writing(micro_space_path, tmp_path, capsys):
    out = tmp_path / "s"
    base = ["search", "--space", str(micro_space_path), "--out", str(out), "--quiet"]
    assert_refused([*base, "--evaluators", "cost", "fid"], tmp_path, capsys, match="unknown evaluator 'fid'")
    assert_refused([*base, "--max-latency-ms", "0"], tmp_path, capsys, match="max_latency_ms")
    assert_refused([*base, "--objectives", "loss", "loss"], tmp_path, capsys, match="two distinct metrics")


def test_runner_uses_latency_as_cost_objective_and_constraint(micro_space_path, tmp_path):
    cache = tmp_path / "latency.json"  # shared by both searches: the second measures nothing
    latency_spec = {**FAST_LATENCY, "options": {**FAST_LATENCY["options"], "cache": str(cache)}}
    config = SearchConfig(space=str(micro_space_path), strategy="random", budget=3, validation=GAUSSIAN,
                          objectives=["loss", "latency_ms"], evaluators=["cost", latency_spec, "distillation"])
    runner = build_runner(config, tmp_path / "s")
    latency = next(e for e in runner.cheap if e.name == "latency")
    assert [e.name for e in runner.cheap] == ["cost", "latency"] and [e.name for e in runner.expensive] == ["distillation"]
    arch = runner.space.teacher_arch()
    assert runner.strategy.problem.cost(arch) == latency.evaluate(arch)["latency_ms"]
    frame = runner.run(progress=False)
    assert set(frame.state) == {"complete"} and (frame.latency_ms > 0).all() and (frame.latency_ratio > 0).all()
    # a bound below every arch's table latency: nothing is feasible, so nothing is asked or evaluated
    cheapest = min(latency.table.cost(a) for a in runner.space.enumerate())
    stamp = cache.stat().st_mtime_ns
    tight = config.model_copy(update={"max_latency_ms": cheapest * 0.99, "budget": 2})
    bounded = build_runner(tight, tmp_path / "t")
    assert cache.stat().st_mtime_ns == stamp  # every entry came from the cache
    assert bounded.strategy.problem.max_cost == tight.max_latency_ms
    assert bounded.strategy.ask(1) == []


def test_bo_takes_eps_from_the_problem_without_a_runner_branch(micro_space_path, tmp_path):
    if "bo" not in available_strategies():
        pytest.skip("bo needs botorch (extra 'bo')")
    config = SearchConfig(space=str(micro_space_path), strategy="bo", eps=[0.4, 0.2], budget=10, validation=GAUSSIAN,
                          strategy_options={"initial": 2, "pool": 20})
    runner = build_runner(config, tmp_path)
    assert runner.strategy.problem.eps == (0.4, 0.2) and runner.strategy.eps_values == [0.4, 0.2]


def test_search_prints_eps_and_when_none_meets_it_and_extract_prints_ratios(micro_space_path, tmp_path, capsys):
    out = tmp_path / "s"
    args = ["search", "--space", str(micro_space_path), "--strategy", "random", "--budget", "2", "--out", str(out),
            "--quiet"]
    config = tmp_path / "search.yaml"
    config.write_text(json.dumps({"validation": GAUSSIAN}))
    assert main([*args, "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "eps (bound on loss): 0.3 (default)" in printed
    frame = read_trials(out)
    if (frame.loss <= 0.3).any():  # untrained surrogates: usually none meets the default
        assert "no complete trial meets" not in printed
    else:
        assert "no complete trial meets loss <= eps 0.3" in printed
    assert main([*args, "--config", str(config), "--out", str(tmp_path / "tiny"), "--eps", "1e-9"]) == 0
    printed = capsys.readouterr().out
    assert "eps (bound on loss): 1e-09;" in printed and "no complete trial meets loss <= eps 1e-09" in printed
    best = frame.sort_values("loss").iloc[0]
    assert main(["extract", str(out), "--pick", best.arch, "--out", str(tmp_path / "compact")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["params_ratio"] == pytest.approx(best.params_ratio)
    assert summary["macs_ratio"] == pytest.approx(best.macs_ratio) and summary["macs_ratio"] >= 1.0
