"""Shared fixtures: a micro SD-like teacher and a search space over it (real diffusers modules, tiny sizes)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

import search_spaces
from tocsr_nas.teachers import Teacher, load_teacher

# Test models are tiny: one thread is as fast as two and immune to oversubscription on a busy machine.
torch.set_num_threads(1)

DATA = Path(__file__).parent / "data"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
MICRO_TEACHER = DATA / "micro-ldm.yaml"

MICRO_SPACE = f"""
name: micro
teacher: {MICRO_TEACHER}
candidates:
  resnet:
    - teacher
    - identity
    - {{op: slim_resnet, width: 0.5}}
    - {{op: dws_resnet, expansion: 2, kernel: 3}}
  transformer:
    - teacher
    - identity
    - {{op: light_transformer, heads: 1, ff_mult: 1, cross_attention: [true, false]}}
    - linear_attention
stages:
  - {{name: down, units: ["down_blocks.*"]}}
  - {{name: mid, units: ["mid_block.*"]}}
  - {{name: up, units: ["up_blocks.*"]}}
"""


@pytest.fixture(scope="session")
def micro_teacher() -> Teacher:
    teacher = load_teacher(MICRO_TEACHER, seed=0)
    with torch.no_grad():  # a non-zero context so cross-attention paths matter
        teacher.context.tokens.normal_(generator=torch.Generator().manual_seed(0))
    return teacher


@pytest.fixture(scope="session")
def micro_space_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spaces") / "micro.yaml"
    path.write_text(MICRO_SPACE)
    return path


@pytest.fixture(scope="session")
def micro_space(micro_space_path: Path) -> search_spaces.SearchSpace:
    return search_spaces.load(micro_space_path)


def write_space(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    """Write a space YAML (``{teacher}`` is replaced by the micro teacher's path)."""
    path = tmp_path / name
    path.write_text(text.replace("{teacher}", str(MICRO_TEACHER)))
    return path


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package), registered in
    ``sys.modules`` as a script run is (dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
