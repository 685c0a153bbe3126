"""Feature distillation of surrogate blocks on the micro teacher (a small space over its first down block)."""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import search_spaces
from tocsr_nas.distill import DistillConfig, distill_blocks, load_surrogates
from tocsr_nas.distill.capture import capture_units
from tocsr_nas.distill.store import TABLE_FILE, candidate_key
from tocsr_nas.errors import ConfigError
from tocsr_nas.ops import registry
from tocsr_nas.ops.base import ResnetOp
from tocsr_nas.ops.registry import register_op
from tocsr_nas.supernet import Supernet
from tocsr_nas.teachers import load_teacher
from tocsr_nas.vae import build_vae, save_vae

from .conftest import MICRO_TEACHER, write_space

SPACE = """
name: micro-distill
teacher: {teacher}
candidates:
  resnet: [teacher, identity, {op: slim_resnet, width: 0.5}]
  transformer: [teacher, linear_attention]
stages:
  - {name: down.0, units: ["down_blocks.0.*"]}
"""


class NanResnet(ResnetOp):
    """Returns NaN once trained a step: its scale starts at 1 and its gradient is NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def block(self, hidden_states: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        return hidden_states * self.scale * torch.tensor(float("nan"))


class WrongShape(ResnetOp):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = torch.nn.Conv2d(channels, channels + 1, 1)

    def block(self, hidden_states: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        return self.proj(hidden_states)


def _nan_resnet(unit, teacher):  # noqa: ANN001, ANN202
    return NanResnet()


def _wrong_shape(unit, teacher):  # noqa: ANN001, ANN202
    return WrongShape(unit.in_channels)


@pytest.fixture
def broken_ops() -> Iterator[None]:
    """Register the two broken test ops for one test only (the registry is global)."""
    with registry.OPS.scoped():
        register_op("test_nan_resnet", kinds={"resnet"}, short="nan")(_nan_resnet)
        register_op("test_wrong_shape", kinds={"resnet"}, short="bad")(_wrong_shape)
        yield


@pytest.fixture(scope="module")
def space_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_space(tmp_path_factory.mktemp("distill-space"), SPACE)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init tiny 16-channel VAE (downsampling 2x): the micro teacher has none."""
    torch.manual_seed(0)
    vae = build_vae({"in_channels": 3, "out_channels": 3, "latent_channels": 16, "block_out_channels": [8, 8],
                     "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
                     "layers_per_block": 1, "norm_num_groups": 4, "sample_size": 32, "scaling_factor": 4.0})
    folder = tmp_path_factory.mktemp("vae")
    save_vae(vae, folder)
    return folder


def make_config(space_path: Path, vae_dir: Path, **changes: object) -> DistillConfig:
    data = {"space": str(space_path), "steps": 100, "batch_size": 2, "lr": 3e-3, "warmup_steps": 2,
            "held_out_samples": 4, "checkpoint_every": 5, "num_threads": 1,
            "latents": {"source": "vae", "vae": str(vae_dir)}}
    data.update(changes)
    return DistillConfig.model_validate(data)


@pytest.fixture(scope="module")
def trained(space_path: Path, vae_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    out = tmp_path_factory.mktemp("surrogates")
    return out, distill_blocks(make_config(space_path, vae_dir), out)


def test_training_cuts_error_and_teacher_is_exact(trained) -> None:  # noqa: ANN001
    out, report = trained
    by_status = {}
    for record in report.records:
        by_status.setdefault(record.status, []).append(record)
    assert set(by_status) == {"teacher", "done", "fixed"}
    assert all(r.rel_error == 0.0 and r.rel_error_init == 0.0 for r in by_status["teacher"])
    for record in by_status["done"]:
        assert record.rel_error < 0.7 * record.rel_error_init, record
    rows = list(csv.DictReader((out / TABLE_FILE).open()))
    assert len(rows) == len(report.records) == 10
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == report.counts() and manifest["teacher"] == "micro-ldm"


def test_supernet_loads_trained_candidates(trained, space_path: Path) -> None:  # noqa: ANN001
    out, report = trained
    supernet = Supernet(load_teacher(MICRO_TEACHER, seed=0), search_spaces.load(space_path))
    statuses = load_surrogates(supernet, out)
    assert sorted(statuses.values()) == sorted(r.status for r in report.records)
    record = next(r for r in report.records if r.status == "done")
    module = supernet.candidate_module(record.unit, record.label)
    saved = load_file(str(out / "candidates" / f"{record.key}.safetensors"))
    assert all(torch.equal(saved[k], v) for k, v in module.state_dict().items())


def test_resume_matches_uninterrupted_run(trained, space_path: Path, vae_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    out, report = trained
    config = make_config(space_path, vae_dir)
    killed = distill_blocks(config, tmp_path, stop_after=37)
    assert {r.status for r in killed.records if r.op == "slim_resnet"} == {"training"}
    assert all(r.step == 37 for r in killed.records if r.status == "training")
    resumed = distill_blocks(config, tmp_path)
    for before, after in zip(report.records, resumed.records):
        assert after.status == before.status
        if after.status == "done":
            assert after.rel_error == pytest.approx(before.rel_error, rel=1e-4)
            first = load_file(str(out / "candidates" / f"{before.key}.safetensors"))
            second = load_file(str(tmp_path / "candidates" / f"{after.key}.safetensors"))
            assert all(torch.allclose(first[k], second[k], atol=1e-5) for k in first)
    assert not list((tmp_path / "checkpoints").glob("*.safetensors"))


def test_finished_candidates_are_not_retrained(trained, space_path: Path, vae_dir: Path) -> None:  # noqa: ANN001
    out, _ = trained
    weights = sorted((out / "candidates").glob("*.safetensors"))
    stamps = [p.stat().st_mtime_ns for p in weights]
    again = distill_blocks(make_config(space_path, vae_dir, checkpoint_every=7), out)
    assert again.teacher_forwards == 0
    assert [p.stat().st_mtime_ns for p in weights] == stamps


def test_changed_config_retrains(space_path: Path, vae_dir: Path, tmp_path: Path) -> None:
    distill_blocks(make_config(space_path, vae_dir, steps=2), tmp_path)
    report = distill_blocks(make_config(space_path, vae_dir, steps=3, loss="channel_mse"), tmp_path)
    assert all(r.steps == 3 for r in report.records if r.status == "done")
    assert report.teacher_forwards > 0


def test_nan_candidate_fails_alone(tmp_path: Path, broken_ops: None) -> None:
    space = write_space(tmp_path, SPACE.replace("{op: slim_resnet, width: 0.5}", "test_nan_resnet, "
                                                "{op: slim_resnet, width: 0.5}"))
    latents = tmp_path / "latents.safetensors"
    save_file({"latents": torch.randn(6, 16, 16, 16, generator=torch.Generator().manual_seed(0))}, str(latents))
    config = DistillConfig.model_validate({"space": str(space), "steps": 3, "batch_size": 2, "held_out_samples": 2,
                                           "num_threads": 1, "latents": {"source": "file", "file": str(latents)}})
    report = distill_blocks(config, tmp_path / "out")
    failed = [r for r in report.records if r.status == "failed"]
    assert {r.op for r in failed} == {"test_nan_resnet"} and all("nan" in r.error for r in failed)
    assert {r.status for r in report.records if r.op == "slim_resnet"} == {"done"}
    assert report.to_json()["failed"]


def test_wrong_output_shape_is_refused(tmp_path: Path, broken_ops: None) -> None:
    space = write_space(tmp_path, SPACE.replace("identity,", "test_wrong_shape,"))
    config = DistillConfig.model_validate({"space": str(space), "steps": 1, "latents": {"source": "gaussian"}})
    with pytest.raises(ConfigError, match="returns shape"):
        distill_blocks(config, tmp_path / "out")


def test_folder_of_another_space_or_teacher_is_refused(trained, tmp_path: Path) -> None:  # noqa: ANN001
    out, _ = trained
    other = write_space(tmp_path, SPACE.replace("linear_attention", "identity"))
    other_space = search_spaces.load(other)
    with pytest.raises(ConfigError, match="trained for another"):
        load_surrogates(Supernet(load_teacher(MICRO_TEACHER, seed=0), other_space), out)
    config = DistillConfig.model_validate({"space": str(other), "steps": 1, "latents": {"source": "gaussian"}})
    with pytest.raises(ConfigError, match="trained for another"):
        distill_blocks(config, out)
    space = search_spaces.load(write_space(tmp_path, SPACE, "same.yaml"))
    with pytest.raises(ConfigError, match="teacher weights"):
        distill_blocks(config.model_copy(update={"space": space.source}), out,
                       teacher=load_teacher(MICRO_TEACHER, seed=1), space=space)


def test_student_input_mode_feeds_student_activations(space_path: Path, vae_dir: Path, tmp_path: Path) -> None:
    space = search_spaces.load(space_path)
    arch = space.arch({"down.0:R": "I"})
    config = make_config(space_path, vae_dir, steps=2, mode="student-input", student_arch=str(arch))
    report = distill_blocks(config, tmp_path)
    attention_teacher = [r for r in report.records if r.op == "teacher" and ".attentions." in r.unit]
    assert all(r.rel_error > 0 for r in attention_teacher)  # its input now comes from skipped resnets
    assert {r.status for r in report.records if r.op == "slim_resnet"} == {"done"}


def test_activation_cache_gives_the_same_run(space_path: Path, vae_dir: Path, tmp_path: Path) -> None:
    config = make_config(space_path, vae_dir, steps=3, cache_dir=str(tmp_path / "cache"))
    first = distill_blocks(config, tmp_path / "a")
    second = distill_blocks(config, tmp_path / "b")
    assert len(list((tmp_path / "cache").rglob("step-*.safetensors"))) == 3
    assert second.teacher_forwards < first.teacher_forwards
    for a, b in zip(first.records, second.records):
        assert a.rel_error == pytest.approx(b.rel_error, rel=1e-6)


def test_capture_records_unit_inputs_and_outputs(micro_teacher, space_path: Path) -> None:  # noqa: ANN001
    supernet = Supernet(micro_teacher, search_spaces.load(space_path))
    units = [supernet.units[p] for p in supernet.blocks]
    with torch.no_grad(), capture_units(micro_teacher.unet, units) as records:
        micro_teacher.unet(**micro_teacher.example_inputs(batch_size=2))
    for unit in units:
        call = records[unit.path]
        assert tuple(call.hidden.shape[1:]) == unit.in_shape and tuple(call.output.shape[1:]) == unit.out_shape
        assert (call.temb is not None) == (unit.kind == "resnet")
        assert (call.context is not None) == (unit.kind == "transformer")


def test_candidate_keys_are_file_safe() -> None:
    key = candidate_key("down_blocks.0.resnets.0", "slim(width=0.5)")
    assert key.startswith("down_blocks.0.resnets.0--slim_width_0.5") and "/" not in key and "(" not in key
    assert key != candidate_key("down_blocks.0.resnets.0", "slim(width=0,5)")


def test_cli_trains_into_a_folder(space_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tocsr_nas.cli import main

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"space: {space_path}\nsteps: 2\nbatch_size: 1\nheld_out_samples: 1\n"
                      "latents: {source: gaussian}\n")
    assert main(["distill-blocks", "--config", str(recipe), "--out", str(tmp_path / "out"), "--steps", "3"]) == 0
    assert "10 candidates" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["counts"]["done"] == 4
    assert main(["distill-blocks", "--config", str(recipe), "--out", str(tmp_path / "out"), "--executor", "ray",
                 "--address", "127.0.0.1:1"]) == 2
    assert "does not answer" in capsys.readouterr().err


def test_student_path_can_come_from_a_surrogate_folder(trained, space_path: Path, vae_dir: Path,  # noqa: ANN001
                                                      tmp_path: Path) -> None:
    out, _ = trained
    arch = search_spaces.load(space_path).arch({"down.0:R": "slim(width=0.5)"})
    config = make_config(space_path, vae_dir, steps=1, mode="student-input", student_arch=str(arch),
                         student_surrogates=str(out))
    report = distill_blocks(config, tmp_path)
    attention_teacher = [r for r in report.records if r.op == "teacher" and ".attentions." in r.unit]
    assert all(0 < r.rel_error < 0.5 for r in attention_teacher)
