"""The local and Ray executors, and distillation on a private local Ray instance (2 workers)."""
from __future__ import annotations

import json
import math
import operator
import time
from pathlib import Path

import pytest

from tocsr_nas.distill import DistillConfig, distill_blocks
from tocsr_nas.errors import ConfigError
from tocsr_nas.executors import LOOPBACK_NODE_IP, LocalExecutor, RayExecutor, make_executor

from .badinput import assert_refused
from .conftest import write_space
from .test_distill import SPACE

# Local and Ray runs see the same batches and initial weights; they differ only in float rounding (each Ray
# worker runs its own teacher copy), so after a few Adam steps the held-out errors agree to this relative tolerance.
RAY_TOLERANCE = 1e-3


def test_local_executor_maps_and_gathers_in_order() -> None:
    with make_executor("local") as executor:
        assert isinstance(executor, LocalExecutor)
        assert executor.map(math.sqrt, [4.0, 9.0]) == [2.0, 3.0]
        handles = [executor.submit(operator.add, i, 1) for i in range(3)]
        assert executor.gather(handles) == [1, 2, 3]


def test_local_executor_delivers_task_errors_on_gather() -> None:
    executor = make_executor("local")
    handle = executor.submit(math.sqrt, -1.0)
    with pytest.raises(ValueError):
        executor.gather([handle])


def test_unknown_executor_kind() -> None:
    with pytest.raises(ConfigError, match="unknown executor 'dask'"):
        make_executor("dask")  # type: ignore[arg-type]


@pytest.mark.parametrize("address, message", [("127.0.0.1:1", "does not answer"), ("nowhere", "bad Ray address")])
def test_unreachable_ray_address_is_a_clear_error(address: str, message: str) -> None:
    begin = time.perf_counter()
    with pytest.raises(ConfigError, match=message):
        make_executor("ray", address=address)
    assert time.perf_counter() - begin < 10


def test_bad_ray_address_loses_nothing(tmp_path: Path) -> None:
    space = write_space(tmp_path, SPACE)
    config = DistillConfig.model_validate({"space": str(space), "steps": 2, "latents": {"source": "gaussian"},
                                           "executor": {"kind": "ray", "address": "127.0.0.1:1"}})
    with pytest.raises(ConfigError, match="does not answer"):
        distill_blocks(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_search_with_a_ray_address_that_does_not_answer_writes_nothing(
        micro_space_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "search.json"
    config.write_text(json.dumps({"space": str(micro_space_path), "strategy": "random", "budget": 2,
                                  "validation": {"latents": {"source": "gaussian"}, "count": 2, "batch_size": 2},
                                  "executor": {"kind": "ray", "address": "127.0.0.1:1"}}))
    assert_refused(["search", "--config", str(config), "--out", str(tmp_path / "out"), "--quiet"], tmp_path, capsys,
                   match="Ray address 127.0.0.1:1 does not answer")


@pytest.fixture(scope="module")
def ray_executor():  # noqa: ANN201
    executor = RayExecutor(num_workers=2)  # a private local instance: ray.init(num_cpus=2, include_dashboard=False)
    yield executor
    executor.close()


def test_private_ray_instance_sits_on_loopback(ray_executor: RayExecutor) -> None:
    import ray

    if LOOPBACK_NODE_IP is not None:
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {LOOPBACK_NODE_IP}


def test_ray_executor_maps_in_order(ray_executor: RayExecutor) -> None:
    assert ray_executor.map(math.sqrt, [16.0, 1.0, 4.0]) == [4.0, 1.0, 2.0]
    with pytest.raises(ValueError):
        ray_executor.gather([ray_executor.submit(math.sqrt, -1.0)])


@pytest.mark.slow  # ~2 min; Ray batches in the default suite: tests/test_search.py::test_batches_evaluate_in_parallel_on_ray
def test_distillation_on_ray_agrees_with_local(ray_executor: RayExecutor, tmp_path: Path) -> None:
    space = write_space(tmp_path, SPACE)
    config = DistillConfig.model_validate({"space": str(space), "steps": 6, "batch_size": 2, "held_out_samples": 2,
                                           "lr": 3e-3, "latents": {"source": "gaussian"}})
    local = distill_blocks(config, tmp_path / "local")
    remote = distill_blocks(config, tmp_path / "ray", executor=ray_executor)
    assert remote.executor == "ray" and remote.workers == 2
    assert [r.key for r in remote.records] == [r.key for r in local.records]
    for a, b in zip(local.records, remote.records):
        assert a.status == b.status
        assert b.rel_error == pytest.approx(a.rel_error, rel=RAY_TOLERANCE, abs=1e-9)
