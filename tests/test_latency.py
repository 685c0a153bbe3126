"""The latency table: measured per candidate on the CPU, cached on disk, summed per arch, checked on whole models."""
from __future__ import annotations

import json

import numpy as np
import pytest

from evaluators.latency import LatencyEvaluator
from tocsr_nas.errors import ConfigError
from tocsr_nas.profiling import latency as latency_module
from tocsr_nas.profiling.latency import LatencyCache, LatencyTarget, build_latency_table, verify_latency_table

FAST = LatencyTarget(warmup=1, repeats=3)


@pytest.fixture(scope="module")
def cached_table(micro_teacher, micro_space, tmp_path_factory):
    path = tmp_path_factory.mktemp("latency") / "cache.json"
    return build_latency_table(micro_teacher, micro_space, FAST, cache=LatencyCache(path)), path


def test_arch_latency_is_fixed_part_plus_its_units(cached_table, micro_space):
    table, _ = cached_table
    frame = table.to_frame()
    assert len(frame) == sum(len(d.units) * len(d.candidates) for d in micro_space.decisions)
    assert (frame.ms > 0).all() and table.fixed_ms >= 0
    arch = micro_space.sample(np.random.default_rng(0))
    chosen = {(d, label) for d, label in arch.choices}
    units = frame[[(d, lab) in chosen for d, lab in zip(frame.decision, frame.label)]].ms.sum()
    assert table.cost(arch) == pytest.approx(table.fixed_ms + units)
    if table.fixed_ms > 0:  # the teacher's own arch sums back to the measured teacher (fixed = teacher - its units)
        assert table.cost(micro_space.teacher_arch()) == pytest.approx(table.teacher_ms)


def test_cache_is_keyed_json_and_reused_without_measuring(cached_table, micro_teacher, micro_space, monkeypatch):
    table, path = cached_table
    data = json.loads(path.read_text())
    assert data["format"] == "tocsr-nas/latency-cache"
    assert all(key.endswith("|cpu|float32|b1|t1") for key in data["entries"])

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured although every entry is cached")

    monkeypatch.setattr(latency_module, "measure_many", no_measuring)
    again = build_latency_table(micro_teacher, micro_space, FAST, cache=LatencyCache(path))
    assert again.rows == table.rows and again.fixed_ms == table.fixed_ms
    with pytest.raises(AssertionError, match="measured"):  # another target (batch 2) is not in the cache
        build_latency_table(micro_teacher, micro_space, LatencyTarget(batch_size=2), cache=LatencyCache(path))


def test_whole_model_check_reports_table_and_model_times(cached_table, micro_teacher, micro_space):
    table, _ = cached_table
    archs = [micro_space.teacher_arch(), micro_space.sample(np.random.default_rng(1))]
    check = verify_latency_table(table, micro_teacher, archs)
    assert list(check.arch_id) == [a.arch_id for a in archs]
    assert (check.ms_model > 0).all() and (check.ms_table > 0).all()
    assert np.allclose(check.rel_error, (check.ms_table - check.ms_model).abs() / check.ms_model)


def test_evaluator_metrics_and_bound(cached_table, micro_space):
    table, _ = cached_table
    arch = micro_space.teacher_arch()
    metrics = LatencyEvaluator(table).evaluate(arch)
    assert metrics["latency_ms"] == table.cost(arch)
    assert metrics["latency_ratio"] == pytest.approx(table.teacher_ms / table.cost(arch))
    assert LatencyEvaluator(table, max_latency_ms=metrics["latency_ms"] * 2).feasible(metrics)
    assert not LatencyEvaluator(table, max_latency_ms=metrics["latency_ms"] / 2).feasible(metrics)


@pytest.mark.parametrize(("fields", "key"), [({"dtype": "float8"}, "dtype"), ({"device": "tpu"}, "device"),
                                             ({"repeats": 0}, "repeats"), ({"threads": 0}, "threads")])
def test_bad_target_is_refused(fields, key):
    with pytest.raises(ConfigError, match=key):
        LatencyTarget(**fields)


def test_cuda_target_without_cuda_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="torch sees no CUDA GPU"):
        LatencyTarget(device="cuda")


# -- ONNX Runtime ---------------------------------------------------------------------------------------------------
def test_onnxruntime_calls_match_torch_and_are_keyed_apart(micro_teacher):
    pytest.importorskip("onnxruntime")
    import torch

    from tocsr_nas.profiling.latency import module_call
    from tocsr_nas.profiling.onnx_runtime import OnnxRuntimeCall
    from tocsr_nas.units import build_unit_graph, example_unit_call, unit_infos, unit_output

    target = LatencyTarget(runtime="onnxruntime", warmup=1, repeats=2)
    assert target.key == "onnxruntime:cpu|float32|b1|t1" and LatencyTarget().key == "cpu|float32|b1|t1"
    units = unit_infos(build_unit_graph(micro_teacher.unet, micro_teacher.example_inputs()))
    for kind in ("resnet", "transformer"):  # a unit with temb, one with keyword arguments and return_dict=False
        unit = next(u for u in units if u.kind == kind)
        module = micro_teacher.unet.get_submodule(unit.path)
        args, kwargs = example_unit_call(unit, generator=torch.Generator().manual_seed(0))
        call = module_call(module, args, kwargs, target)
        assert isinstance(call, OnnxRuntimeCall) and call.run is None  # exported on the first call only
        with torch.no_grad():
            expected = unit_output(module(*args, **kwargs)).numpy()
        got = call()[0]
        assert got.shape == expected.shape and np.allclose(got, expected, atol=1e-4)
        assert call.module is None  # the torch module is released once the session holds the model
    times = latency_module.measure_many({"unit": call}, target)
    assert times["unit"] > 0


def test_onnxruntime_target_is_refused_where_it_cannot_run(monkeypatch):
    from tocsr_nas.profiling import onnx_runtime

    with pytest.raises(ConfigError, match="runtime 'onnxruntime' times on the CPU in float32 only"):
        LatencyTarget(runtime="onnxruntime", dtype="bfloat16")
    with pytest.raises(ConfigError, match=r"unknown runtime 'tensorrt' \(allowed: onnxruntime, torch\)"):
        LatencyTarget(runtime="tensorrt")
    real = onnx_runtime.importlib.util.find_spec
    monkeypatch.setattr(onnx_runtime.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        LatencyTarget(runtime="onnxruntime")
    assert str(err.value) == ("runtime: runtime 'onnxruntime' needs the package(s) onnxruntime "
                              "(pip install 'tocsr-nas[onnx]')")


@pytest.mark.slow
def test_onnxruntime_table_sums_and_whole_model_check(micro_teacher, micro_space):
    pytest.importorskip("onnxruntime")
    target = LatencyTarget(runtime="onnxruntime", warmup=1, repeats=3)
    table = build_latency_table(micro_teacher, micro_space, target)
    assert (table.to_frame().ms > 0).all() and table.teacher_ms > 0
    archs = [micro_space.teacher_arch(), micro_space.sample(np.random.default_rng(1))]
    check = verify_latency_table(table, micro_teacher, archs)
    assert (check.ms_model > 0).all() and (check.ms_table > 0).all()
