"""Scale-out: device and dtype choice, memory-aware distillation groups, dry-run plans (all on the CPU here)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tocsr_nas.device import autocast, peak_memory, resolve_device, resolve_dtype
from tocsr_nas.distill import DistillConfig, distill_blocks
from tocsr_nas.distill.plan import GIB, DistillPlan, MemoryProbe, plan_groups
from tocsr_nas.distill.trainer import DistillWorker
from tocsr_nas.errors import ConfigError

from .badinput import assert_refused, run_cli
from .conftest import write_space
from .test_distill import SPACE

NO_GPU = not torch.cuda.is_available()


def test_auto_is_the_cpu_without_a_gpu_and_cpu_is_always_there() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "CUDA:3"])
def test_asking_for_cuda_without_one_is_a_one_line_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="torch sees no CUDA GPU") as info:
        resolve_device(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "gpu0", "cuda:-1"])
def test_unknown_device(spec: str) -> None:
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device(spec)


def test_dtypes_on_the_cpu() -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype("float32", cpu) is torch.float32
    assert resolve_dtype("bfloat16", cpu) is torch.bfloat16
    with pytest.raises(ConfigError, match="unknown dtype 'float8'"):
        resolve_dtype("float8", cpu)


def test_autocast_runs_the_teacher_in_bfloat16_on_the_cpu() -> None:
    layer = torch.nn.Linear(4, 4)
    with autocast(torch.device("cpu"), torch.bfloat16):
        assert layer(torch.ones(2, 4)).dtype is torch.bfloat16
    with autocast(torch.device("cpu"), torch.float32):
        assert layer(torch.ones(2, 4)).dtype is torch.float32


def test_peak_memory_sees_a_big_allocation_on_the_cpu() -> None:
    with peak_memory(torch.device("cpu")) as measured:
        block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB
        del block
    assert measured["delta"] >= 48 * 1024 * 1024


def _config(space: Path, **changes: object) -> DistillConfig:
    data = {"space": str(space), "steps": 4, "batch_size": 2, "held_out_samples": 2, "lr": 3e-3, "warmup_steps": 1,
            "checkpoint_every": 2, "latents": {"source": "gaussian"}, "device": "cpu"}
    data.update(changes)
    return DistillConfig.model_validate(data)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for path in sorted(folder.glob("**/*.safetensors")):
        if "checkpoint" not in path.name:
            tensors.update({f"{path.relative_to(folder)}:{k}": v for k, v in load_file(str(path)).items()})
    return tensors


def test_plan_packs_consecutive_units_and_refuses_a_budget_below_one_unit() -> None:
    gib = 1024 ** 3
    probe = MemoryProbe(base=1 * gib, forward=0.5 * gib, units={"a": 0.2 * gib, "b": 0.3 * gib, "c": 0.4 * gib})
    keys = {"a": ["a/T", "a/I"], "b": ["b/T"], "c": ["c/T", "c/x"]}
    plan = plan_groups(keys, probe, 2.05, forwards=7, device="cpu")
    assert [g.units for g in plan.groups] == [["a", "b"], ["c"]]
    assert plan.teacher_forwards == 14 and plan.groups[0].keys == ["a/T", "a/I", "b/T"]
    assert plan_groups(keys, probe, None, forwards=7, device="cpu").teacher_forwards == 7
    with pytest.raises(ConfigError, match="smaller than the smallest group: unit c"):
        plan_groups(keys, probe, 1.8, forwards=7, device="cpu")


def test_groups_give_the_same_surrogates_as_one_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space = write_space(tmp_path, SPACE)
    plan = distill_blocks(_config(space, max_memory_gb=1000.0), tmp_path / "plan", dry_run=True)
    assert isinstance(plan, DistillPlan) and len(plan.groups) == 1 and not (tmp_path / "plan").exists()
    assert plan.probe.base > 0 and plan.probe.forward >= 0
    one = distill_blocks(_config(space), tmp_path / "one")
    # every unit 1 GiB, budget 1.5 GiB: one unit per group (the real probe's figures depend on the allocator)
    units = list(plan.probe.units)
    monkeypatch.setattr(DistillWorker, "probe", lambda self: MemoryProbe(0.0, 0.0, dict.fromkeys(units, GIB)))
    many = distill_blocks(_config(space, max_memory_gb=1.5), tmp_path / "many")
    assert one.groups == 1 and many.groups == len(units) > 1
    assert many.teacher_forwards > one.teacher_forwards
    assert [(r.key, r.status) for r in one.records] == [(r.key, r.status) for r in many.records]
    for a, b in zip(one.records, many.records):
        assert a.rel_error == b.rel_error and a.train_loss == b.train_loss
    first, second = _weights(tmp_path / "one"), _weights(tmp_path / "many")
    assert first.keys() == second.keys() and first
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_bfloat16_teacher_trains_fp32_candidates_on_the_cpu(tmp_path: Path) -> None:
    space = write_space(tmp_path, SPACE)
    report = distill_blocks(_config(space, dtype="bfloat16", gradient_checkpointing=True, offload_activations=True),
                            tmp_path / "bf16")
    done = [r for r in report.records if r.status == "done"]
    assert done and all(r.rel_error < r.rel_error_init for r in done)
    assert all(t.dtype is torch.float32 for t in _weights(tmp_path / "bf16").values())
    assert _config(space, dtype="bfloat16").fingerprint() != _config(space).fingerprint()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = write_space(tmp_path, SPACE)
    out = tmp_path / "out"
    assert run_cli(["distill-blocks", "--space", str(space), "--out", str(out), "--steps", "3", "--device", "cpu",
                    "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "group 0:" in text and "teacher forwards" in text and "device cpu" in text
    assert not out.exists()


@pytest.mark.parametrize("flags, match", [
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--max-memory-gb", "0.001"], "smaller than the smallest group"),
] + ([(["--device", "cuda:1"], "torch sees no CUDA GPU")] if NO_GPU else []))
def test_bad_device_or_budget_is_refused_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], match: str) -> None:
    space = write_space(tmp_path, SPACE)
    assert_refused(["distill-blocks", "--space", str(space), "--out", str(tmp_path / "out"), "--steps", "2",
                    "--device", "cpu", *flags], tmp_path, capsys, match=match)
