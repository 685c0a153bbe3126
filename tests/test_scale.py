"""Scale-out: device and dtype choice, memory-aware distillation groups, dry-run plans (all on the CPU here)."""
from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tocsr_nas.device import autocast, resolve_device, resolve_dtype
from tocsr_nas.distill import DistillConfig, distill_blocks
from tocsr_nas.distill.plan import GIB, DistillPlan, MemoryProbe, plan_groups
from tocsr_nas.distill.trainer import DistillWorker
from tocsr_nas.errors import ConfigError
from tocsr_nas.executors import LOOPBACK_NODE_IP, RayExecutor

from .badinput import assert_refused, run_cli
from .conftest import load_benchmark, write_space
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
    """In a fresh process: in this one, heap that earlier tests freed but that is still resident may serve it."""
    code = ("import torch\nfrom tocsr_nas.device import peak_memory\n"
            "with peak_memory(torch.device('cpu')) as measured:\n"
            "    block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB\n"
            "    del block\n"
            "print(measured['delta'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert float(out.stdout.split()[-1]) >= 48 * 1024 * 1024


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


def test_experiment_device_and_dtype_reach_every_stage() -> None:
    from tocsr_nas.experiments import ExperimentConfig

    config = ExperimentConfig.model_validate({"name": "x", "stages": ["surrogates", "search"], "device": "cpu",
                                              "dtype": "bfloat16", "latent_size": 8,
                                              "search": {"dtype": "float32"}})
    assert (config.surrogates.device, config.surrogates.dtype, config.surrogates.latent_size) == ("cpu", "bfloat16", 8)
    assert (config.search.device, config.search.dtype, config.search.latent_size) == ("cpu", "float32", 8)
    if NO_GPU:
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            ExperimentConfig.model_validate({"name": "x", "stages": ["surrogates"], "device": "cuda"})


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_training_loop_refuses_cuda_without_one_before_writing(tmp_path: Path) -> None:
    from tocsr_nas.training.config import LoopConfig
    from tocsr_nas.training.loop import train

    with pytest.raises(ConfigError, match="torch sees no CUDA GPU"):
        train(None, [], LoopConfig(steps=1, batch_size=1, lr=1e-3, device="cuda"), tmp_path / "out")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # ~3 min on the loaded 2-core machine (the tiny-ldm UNet and VAE decode, twice)
def test_sampling_in_bfloat16_on_the_cpu_matches_float32() -> None:
    from tocsr_nas.teachers import load_teacher
    from tocsr_nas.teachers.weights import load_scheduler, weights_folder
    from tocsr_nas.training.sampling import sample_images

    teacher = load_teacher("tiny-ldm")
    scheduler = load_scheduler(weights_folder("tiny-ldm"))
    full = sample_images(teacher, scheduler, 1, steps=2, seed=0, device="cpu")
    half = sample_images(teacher, scheduler, 1, steps=2, seed=0, device="cpu", dtype=torch.bfloat16)
    assert half.dtype is torch.float32 and torch.isfinite(half).all()
    assert 0 < float((full - half).abs().mean()) < 0.05  # bfloat16 really ran, and stayed close


class _Frozen:
    """A training task for the loop tests: a trained linear layer after a frozen one that records its dtypes."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model, self.encoder = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4).requires_grad_(False)
        self.frozen, self.seen = (self.encoder,), set()

    def loss(self, model, batch, generator):
        features = self.encoder(batch)
        self.seen.add(features.dtype)
        loss = (model(features).float() - 1).square().mean()
        return loss, {"loss": float(loss.detach())}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_training_loop_runs_the_loss_in_the_dtype_and_keeps_float32_weights(tmp_path: Path, dtype: str) -> None:
    from tocsr_nas.training.config import LoopConfig
    from tocsr_nas.training.loop import train

    data = [torch.randn(4, generator=torch.Generator().manual_seed(i)) for i in range(24)]
    runs = {}
    for name in ("float32", dtype):
        task = _Frozen()
        config = LoopConfig(steps=12, batch_size=2, lr=1e-2, device="cpu", dtype=name, log_every=12)
        runs[name] = train(task, data, config, tmp_path / name)
        assert task.seen == {getattr(torch, name)}
        assert all(p.dtype is torch.float32 for p in runs[name].model.parameters())
    first, reduced = runs["float32"].history[-1]["loss"], runs[dtype].history[-1]["loss"]
    assert first != reduced and reduced == pytest.approx(first, rel=0.1)  # reduced precision really ran, and trained


def test_train_takes_device_and_dtype_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from .test_training import TINY_VAE, _loop

    recipe = tmp_path / "vae.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"crop_size": 32}, "loop": _loop(1), "vae": TINY_VAE,
                                      "scaling_crops": 2}))
    assert run_cli(["train", "vae", "--config", str(recipe), "--out", str(tmp_path / "run"), "--device", "cpu",
                    "--dtype", "bfloat16"]) == 0
    assert (tmp_path / "run" / "result.json").is_file()
    for command in (["train", "vae"], ["train-sr", "adapt"], ["expand"]):
        for flags, match in ((["--device", "tpu"], "unknown device 'tpu'"),
                             (["--dtype", "float8"], "invalid choice: 'float8'")):
            assert_refused([*command, "--config", str(recipe), "--out", str(tmp_path / "out"), *flags], tmp_path,
                           capsys, match=match)
    recipe.write_text(yaml.safe_dump({"loop": {**_loop(1), "device": "npu"}, "vae": TINY_VAE}))
    assert_refused(["train", "vae", "--config", str(recipe), "--out", str(tmp_path / "out")], tmp_path, capsys,
                   match="unknown device 'npu'")


@pytest.mark.slow  # ~35 s on the loaded 2-core machine (cost table, then every candidate timed); refusals are fast
def test_profile_times_latency_on_the_device_in_the_dtype(micro_space_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tocsr_nas.profiling import latency

    monkeypatch.setattr(latency, "LatencyTarget", functools.partial(latency.LatencyTarget, warmup=0, repeats=1))
    assert run_cli(["profile", "--space", str(micro_space_path), "--no-ptflops", "--latency", "--device", "cpu",
                    "--dtype", "bfloat16", "--json"]) == 0
    latency = json.loads(capsys.readouterr().out)["latency"]
    assert (latency["device"], latency["dtype"]) == ("cpu", "bfloat16") and latency["teacher_ms"] > 0


@pytest.mark.parametrize("flags, match", [
    (["--device", "cpu"], "choose where --latency times: add --latency"),
    (["--latency", "--device", "tpu"], "unknown device 'tpu'"),
] + ([(["--latency", "--device", "cuda"], "torch sees no CUDA GPU")] if NO_GPU else []))
def test_profile_bad_device_is_refused_before_anything_is_written(
        micro_space_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
        match: str) -> None:
    assert_refused(["profile", "--space", str(micro_space_path), "--out", str(tmp_path / "t.json"), *flags],
                   tmp_path, capsys, match=match)


def test_extracted_compact_unet_runs_on_the_cpu_in_bfloat16(micro_teacher, micro_space, tmp_path: Path) -> None:
    from tocsr_nas.search.components import run_compact_once
    from tocsr_nas.supernet import Supernet

    Supernet(micro_teacher, micro_space).extract(micro_space.sample(__import__("numpy").random.default_rng(0))) \
        .save_pretrained(tmp_path / "compact")
    assert run_compact_once(tmp_path / "compact", torch.device("cpu"), torch.bfloat16, 8) > 0


@pytest.mark.parametrize("flags, match", [(["--device", "tpu"], "unknown device 'tpu'"),
                                          (["--dtype", "float8"], "invalid choice")]
                         + ([(["--device", "cuda:0"], "torch sees no CUDA GPU")] if NO_GPU else []))
def test_extract_bad_device_is_refused_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], match: str) -> None:
    (tmp_path / "search").mkdir()
    assert_refused(["extract", str(tmp_path / "search"), "--out", str(tmp_path / "compact"), *flags], tmp_path,
                   capsys, match=match)


def _search_config(tmp_path: Path, micro_space_path: Path) -> Path:
    config = tmp_path / "search.json"
    config.write_text(json.dumps({"space": str(micro_space_path), "strategy": "random", "budget": 2,
                                  "validation": {"latents": {"source": "gaussian"}, "count": 2, "batch_size": 2}}))
    return config


def test_the_search_evaluator_scores_in_bfloat16_on_the_cpu(micro_teacher, micro_space) -> None:  # noqa: ANN001
    import numpy as np

    from evaluators.distillation import DistillationEvaluator, ValidationSet
    from tocsr_nas.supernet import Supernet

    supernet = Supernet(micro_teacher, micro_space)
    arch = micro_space.sample(np.random.default_rng(1))
    latents = torch.randn(2, micro_teacher.latent_channels, 8, 8, generator=torch.Generator().manual_seed(0))
    scores = {}
    for dtype in (torch.float32, torch.bfloat16):
        validation = ValidationSet.build(micro_teacher, latents, batch_size=2, device="cpu", dtype=dtype)
        assert validation.dtype is dtype and validation.target.dtype is torch.float32
        scores[dtype] = DistillationEvaluator(supernet, validation).evaluate(arch)["mse"]
    assert scores[torch.bfloat16] != scores[torch.float32]  # the teacher and the student really ran in bfloat16
    assert scores[torch.bfloat16] == pytest.approx(scores[torch.float32], rel=0.1)


@pytest.mark.slow  # ~60 s on the loaded 2-core machine (two searches); the evaluator in bfloat16 is tested above
def test_search_scores_on_the_cpu_in_bfloat16(micro_space_path: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from tocsr_nas.search.store import read_trials

    config = _search_config(tmp_path, micro_space_path)
    losses = {}
    for dtype in ("float32", "bfloat16"):
        assert run_cli(["search", "--config", str(config), "--out", str(tmp_path / dtype), "--quiet", "--device", "cpu",
                        "--dtype", dtype]) == 0
        frame = read_trials(tmp_path / dtype)
        assert list(frame.state) == ["complete", "complete"]
        losses[dtype] = frame.sort_values("arch_id").loss.to_numpy()
    assert (losses["float32"] != losses["bfloat16"]).any()  # the teacher and the students really ran in bfloat16
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.1)


@pytest.mark.parametrize("command", ["distill-blocks", "search"])
def test_a_dtype_the_device_cannot_run_is_refused_before_anything_is_written(
        command: str, micro_space_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """This CPU runs all three dtypes, so the device's answer to the probe is what is replaced here (as a GPU without
    bfloat16 kernels answers); the refusal path is the real one."""
    from tocsr_nas import device as device_module

    monkeypatch.setattr(device_module, "_unsupported",
                        lambda device, name: None if name == "float32" else "no float16 kernels")
    where = (["--space", str(micro_space_path)] if command == "distill-blocks"
             else ["--config", str(_search_config(tmp_path, micro_space_path))])
    assert_refused([command, *where, "--out", str(tmp_path / "out"), "--device", "cpu", "--dtype", "float16"], tmp_path,
                   capsys, match="dtype float16 does not run on cpu: no float16 kernels (allowed: float32)")


@pytest.mark.parametrize("override, match", [
    ("device=tpu", "unknown device 'tpu'"),
    ("surrogates.max_memory_gb=0.0001", "smaller than the smallest group"),
    ("surrogates.executor={kind: ray, address: '127.0.0.1:1'}", "Ray address 127.0.0.1:1 does not answer"),
    ("search.executor={kind: ray, address: '127.0.0.1:1'}", "Ray address 127.0.0.1:1 does not answer"),
] + ([("device=cuda", "torch sees no CUDA GPU")] if NO_GPU else []))
def test_run_refuses_bad_scale_input_before_anything_is_written(
        micro_space_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, match: str) -> None:
    """An experiment (the memory budget is only known once a step is probed, inside the surrogates stage: the
    stage folder it was refused in goes again, and so do the run folders the call made)."""
    experiment = tmp_path / "e.yaml"
    experiment.write_text(f"name: e\nspace: {micro_space_path}\nstages: [surrogates, search]\n"
                          "surrogates: {steps: 2, batch_size: 1, held_out_samples: 1, latents: {source: gaussian}}\n"
                          "search: {strategy: random, budget: 2, validation: {latents: {source: gaussian}, count: 2}}\n")
    assert_refused(["run", str(experiment), override, "--runs-dir", str(tmp_path / "runs")], tmp_path, capsys,
                   match=match)


@pytest.mark.parametrize("command", ["search", "sample", "upscale", "evaluate-sr"])
def test_every_network_command_refuses_an_unknown_device_before_anything_is_written(
        command: str, micro_space_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    from PIL import Image

    (tmp_path / "data").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "data" / "x.png")
    argv = {"search": ["search", "--space", str(micro_space_path), "--out", str(tmp_path / "out")],
            "sample": ["sample", "-n", "1", "--steps", "1", "-o", str(tmp_path / "out.png")],
            "upscale": ["upscale", str(tmp_path / "data" / "x.png"), "-o", str(tmp_path / "out.png")],
            "evaluate-sr": ["evaluate-sr", "--model", "x4-compact", "--data", str(tmp_path / "data"), "--out",
                            str(tmp_path / "out")]}[command]
    assert_refused([*argv, "--device", "tpu"], tmp_path, capsys, match="unknown device 'tpu'")


def test_search_refuses_a_bad_device_before_printing_its_eps(micro_space_path: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(["search", "--space", str(micro_space_path), "--out", str(tmp_path / "out"), "--device", "tpu"])
    assert code == 2 and capsys.readouterr().out == ""


# -- a real two-node Ray cluster on this machine (loopback), started and stopped by the tests -------------------

def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _start_node(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """``ray start --block ...`` in its own process group (stopped by that group's id, never by name)."""
    return subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--block", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _stop_node(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node (1 CPU) and a second node (1 CPU, resource ``second_node``) at a loopback address (Ray turns
    127.0.0.1 into the machine's outward IP, not 127.0.0.2: see tocsr_nas.executors); yields the address."""
    import ray

    if LOOPBACK_NODE_IP is None:
        pytest.skip("a second loopback address is Linux only")
    if ray.is_initialized():
        ray.shutdown()
    host = LOOPBACK_NODE_IP
    port = _free_port(host)
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 characters
    # token authentication as Ray defaults to for `ray start` (the token in ~/.ray/auth_token, made if missing)
    # and no memory monitor: on a shared machine near its memory limit Ray's OOM killer picked actors of its own
    # (the tests kill exactly one and count the redone work)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "token",
           "RAY_memory_monitor_refresh_ms": "0"}
    common = ["--num-cpus", "1", "--num-gpus", "0", "--node-ip-address", host,
              "--object-store-memory", str(100 * 1024 ** 2), "--disable-usage-stats"]
    nodes = [_start_node(["--head", "--port", str(port), "--temp-dir", temp, "--include-dashboard", "false", *common],
                         env)]
    try:
        address = f"{host}:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:  # wait for the head's GCS to answer before the second node joins
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        nodes.append(_start_node(["--address", address, "--resources", json.dumps({"second_node": 1}), *common], env))
        executor = RayExecutor(address=address, num_workers=2)  # joins (with the cluster's auth token)
        while len([n for n in ray.nodes() if n["Alive"]]) < 2 and time.time() < deadline:
            time.sleep(0.5)
        alive = [n for n in ray.nodes() if n["Alive"]]
        assert len(alive) == 2, "the second node did not join"
        assert {n["NodeManagerAddress"] for n in alive} == {host}  # on loopback, whatever the machine's network
        yield address
        executor.close()
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for node in reversed(nodes):
            _stop_node(node)
        shutil.rmtree(temp, ignore_errors=True)


def _cluster_executor(address: str) -> RayExecutor:
    return RayExecutor(address=address, num_workers=2, cpus_per_task=1.0)


@pytest.mark.slow  # starting two Ray nodes on 2 shared cores takes ~35 s, actors importing torch ~30 s more
def test_actors_sit_on_both_nodes_and_redo_work_lost_to_a_killed_actor(ray_cluster: str) -> None:
    import ray

    executor = _cluster_executor(ray_cluster)
    pool = executor.pool(functools.partial(SlowSquare, 0.0))
    assert len(set(pool.nodes())) == 2  # one actor per node: each needs the only CPU of its node
    assert pool.map("square", [1, 2, 3]) == [1, 4, 9]
    pool.close()  # frees both CPUs of the cluster
    slow = executor.pool(functools.partial(SlowSquare, 1.5))
    result: list[list[int]] = []
    worker = threading.Thread(target=lambda: result.append(slow.map("square", list(range(6)))))
    worker.start()
    deadline = time.time() + 30
    while not slow.busy and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    ray.kill(slow.actors[next(iter(slow.busy))])
    worker.join(120)
    assert result == [[x * x for x in range(6)]] and slow.redone == 1
    slow.close()


class SlowSquare:
    """A pool worker for the executor tests: squares a number after a pause."""

    def __init__(self, pause: float) -> None:
        self.pause = pause

    def square(self, x: int) -> int:
        time.sleep(self.pause)
        return x * x


@pytest.mark.slow
def test_distillation_on_a_two_node_cluster_survives_a_killed_actor(
        ray_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit groups go to the two actors; one is killed mid-run: finished groups are kept, the lost one redone once;
    the surrogates equal a local run's."""
    import ray

    space = write_space(tmp_path, SPACE)
    config = _config(space, steps=12, checkpoint_every=100)
    local = distill_blocks(config, tmp_path / "local")
    units = list(dict.fromkeys(r.unit for r in local.records))
    monkeypatch.setattr(DistillWorker, "probe", lambda self: MemoryProbe(0.0, 0.0, dict.fromkeys(units, GIB)))
    pools: list = []
    original = RayExecutor.pool
    monkeypatch.setattr(RayExecutor, "pool", lambda self, factory: pools.append(original(self, factory)) or pools[-1])
    config = config.model_copy(update={"max_memory_gb": 1.5})
    out = tmp_path / "ray"
    reports: list = []
    runner = threading.Thread(target=lambda: reports.append(distill_blocks(config, out,
                                                                           executor=_cluster_executor(ray_cluster))))
    runner.start()
    deadline = time.time() + 300
    finished_before: dict[str, float] = {}
    while time.time() < deadline and runner.is_alive():
        finished_before = {p.name: p.stat().st_mtime for p in out.glob("**/*.safetensors") if "ckpt" not in p.name}
        if finished_before and pools and pools[0].busy:
            ray.kill(pools[0].actors[next(iter(pools[0].busy))])
            break
        time.sleep(0.05)
    runner.join(300)
    (report,) = reports
    assert pools[0].redone == 1 and report.groups == len(units)
    for name, mtime in finished_before.items():  # finished before the kill: kept, not trained again
        assert next(out.glob(f"**/{name}")).stat().st_mtime == mtime
    assert [(r.key, r.status) for r in report.records] == [(r.key, r.status) for r in local.records]
    for a, b in zip(local.records, report.records):
        assert b.rel_error == pytest.approx(a.rel_error, rel=1e-6, abs=1e-9)
    first, second = _weights(tmp_path / "local"), _weights(out)
    assert first.keys() == second.keys()
    assert all(torch.allclose(first[k], second[k], rtol=1e-5, atol=1e-7) for k in first)


@pytest.mark.slow
def test_search_on_a_two_node_cluster_survives_a_killed_actor(
        ray_cluster: str, micro_teacher, micro_space, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Arch batches go to the two actors; one is killed mid-run: stored trials are kept, the lost batch is redone
    once, and the trials equal a local run's."""
    import ray

    from evaluators.cost import CostEvaluator
    from evaluators.distillation import DistillationEvaluator, ValidationSet
    from tocsr_nas.profiling.cost_table import build_cost_table
    from tocsr_nas.search import SearchConfig, SearchRunner, read_trials
    from tocsr_nas.search.components import validation_latents
    from tocsr_nas.search.config import ValidationConfig
    from tocsr_nas.supernet import Supernet

    validation = {"latents": {"source": "gaussian"}, "count": 4, "batch_size": 2}
    table = build_cost_table(micro_teacher, micro_space, ptflops=False, progress=False)
    latents = validation_latents(micro_teacher, ValidationConfig(**validation), 16)
    expensive = [SlowEvaluator(DistillationEvaluator(Supernet(micro_teacher, micro_space),
                                                     ValidationSet.build(micro_teacher, latents, batch_size=2)))]
    config = SearchConfig(space=str(micro_space.source), strategy="random", budget=8, batch_size=2,
                          validation=validation, device="cpu")

    def make(out: Path, executor=None) -> SearchRunner:
        return SearchRunner(config, out, space=micro_space, table=table, cheap=[CostEvaluator(table)],
                            expensive=expensive, executor=executor)

    local = make(tmp_path / "local").run(progress=False)
    pools: list = []
    original = RayExecutor.pool
    monkeypatch.setattr(RayExecutor, "pool", lambda self, factory: pools.append(original(self, factory)) or pools[-1])
    out = tmp_path / "ray"
    frames: list = []
    runner = threading.Thread(target=lambda: frames.append(make(out, _cluster_executor(ray_cluster)).run(progress=False)))
    runner.start()
    deadline, stored = time.time() + 300, []
    while time.time() < deadline and runner.is_alive():
        trials = out / "trials.jsonl"
        stored = trials.read_text().splitlines() if trials.exists() else []
        if len(stored) >= 2 and pools and pools[0].busy:
            ray.kill(pools[0].actors[next(iter(pools[0].busy))])
            break
        time.sleep(0.05)
    runner.join(300)
    (remote,) = frames
    assert pools[0].redone == 1 and 2 <= len(stored) < 8
    assert (out / "trials.jsonl").read_text().splitlines()[:len(stored)] == stored  # kept as they were
    assert list(remote.arch_id) == list(local.arch_id) and remote.arch_id.is_unique
    assert remote.loss.tolist() == pytest.approx(local.loss.tolist(), rel=1e-6)
    assert len(read_trials(out)) == 8


class SlowEvaluator:
    """Wraps an evaluator and pauses before each evaluation (so that an actor can be killed mid-batch)."""

    def __init__(self, inner, pause: float = 0.7) -> None:
        self.inner, self.pause = inner, pause
        self.name, self.fingerprint = inner.name, inner.fingerprint

    def evaluate(self, arch, budget=None):
        time.sleep(self.pause)
        return self.inner.evaluate(arch, budget)


# -- the SD-1.5-size smoke pipeline (experiments/sd15_16ch_smoke.yaml, run by the scale benchmark's run_smoke) -----

def test_a_failed_benchmark_cell_shows_its_real_error() -> None:
    error = load_benchmark("sd_scale")._error
    traceback = "Traceback (most recent call last):\n  File x\ntocsr_nas.errors.ConfigError: max_memory_gb: too small\n"
    assert error(subprocess.CompletedProcess([], 1, "", traceback)) == "tocsr_nas.errors.ConfigError: max_memory_gb: too small"
    assert error(subprocess.CompletedProcess([], -9, "", "")) == "killed by SIGKILL (by the kernel's OOM killer, most likely)"
    assert error(subprocess.CompletedProcess([], 3, "", "")) == "exit status 3, no output"


@pytest.mark.slow
def test_sd15_smoke_pipeline(tmp_path: Path) -> None:
    """Surrogates, search and extract on sd15-16ch end to end on the CPU under 20 GiB; the compact UNet runs DDIM.

    The run is benchmarks/sd_scale.py's ``run_smoke`` (the benchmark's smoke figures come from the same code)."""
    from diffusers import DDIMScheduler

    from tocsr_nas.compact import CompactUNet

    figures = load_benchmark("sd_scale").run_smoke(tmp_path)
    assert figures["peak_rss_gib"] <= 20
    assert set(figures["stages_s"]) == {"surrogates", "search", "extract"}
    assert "vs the teacher's 859.6M / 402.3 G" in figures["extract_line"]
    assert figures["compact"]["params_m"] < 859.6 and figures["compact"]["gmacs"] < 402.3
    print(f"sd15 smoke: peak RSS {figures['peak_rss_gib']:.2f} GiB; "
          + ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in figures["stages_s"].items()))
    print(figures["extract_line"])
    run_dir = tmp_path / "sd15_16ch_smoke"
    unet = CompactUNet.from_pretrained(run_dir / "extract" / "compact")
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(3)
    generator = torch.Generator().manual_seed(0)
    assert unet.config.in_channels == 16
    latents = torch.randn(1, 16, 16, 16, generator=generator)
    context = torch.randn(1, 77, unet.config.cross_attention_dim, generator=generator)
    with torch.no_grad():
        for t in scheduler.timesteps:
            latents = scheduler.step(unet(latents, t, encoder_hidden_states=context).sample, t, latents).prev_sample
    assert latents.shape == (1, 16, 16, 16) and torch.isfinite(latents).all()


def test_latency_target_resolves_its_device_and_dtype_before_they_enter_the_cache_key() -> None:
    from tocsr_nas.profiling.latency import LatencyTarget

    target = LatencyTarget(device="auto", dtype="torch.float32")
    assert target.device == str(resolve_device("auto")) and target.dtype == "float32"
    assert target.key.startswith(f"{resolve_device('auto')}|float32|")
    assert LatencyTarget(device="auto").key == LatencyTarget(device=str(resolve_device("auto"))).key
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        LatencyTarget(device="tpu")
