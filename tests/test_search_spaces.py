"""YAML search spaces: every shipped space loads; arch strings round-trip; bad input gives one-line errors."""
from __future__ import annotations

import numpy as np
import pytest

import search_spaces
from tocsr_nas.arch import Arch
from tocsr_nas.errors import ConfigError

from .conftest import write_space

SHIPPED = search_spaces.available_spaces()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_loads_and_samples(name):
    space = search_spaces.load(name)
    assert space.size > 1 and space.decisions
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = space.sample(rng)
        assert space.parse(str(arch)) == arch
        assert space.decode(space.encode(arch)) == arch
        assert space.one_hot(arch).sum() == len(space.decisions)
    teacher_arch = space.teacher_arch()
    assert all(label == "T" for _, label in teacher_arch)


def test_expected_shipped_spaces():
    assert {"tiny_ldm", "sd15_nanosd", "tiny_ldm_per_unit"} <= set(SHIPPED)
    per_unit = search_spaces.load("tiny_ldm_per_unit")
    assert all(len(d.units) == 1 for d in per_unit.decisions)


def test_hyperparameter_lists_expand(micro_space):
    attention = micro_space.decision("down:A")
    labels = [c.label for c in attention.candidates]
    assert labels == ["T", "I", "lite(heads=1,ff_mult=1,cross_attention=1)", "lite(heads=1,ff_mult=1,cross_attention=0)", "lin"]
    assert micro_space.size == np.prod(micro_space.cardinalities)


def test_arch_identity_is_stable(micro_space):
    arch = micro_space.arch({"down:R": "I", "up:A": "lin"})
    same = Arch(tuple(arch.choices))
    assert arch == same and hash(arch) == hash(same) and arch.arch_id == same.arch_id
    assert str(arch).startswith("down:R=I,A=T;mid:")
    assert micro_space.parse("down:R=I;up:A=lin") == arch  # decisions left out keep the teacher


def test_mutate_and_crossover_stay_in_space(micro_space):
    rng = np.random.default_rng(3)
    a, b = micro_space.sample(rng), micro_space.sample(rng)
    mutant = micro_space.mutate(a, rng)
    assert sum(x != y for x, y in zip(micro_space.encode(a), micro_space.encode(mutant))) == 1
    child = micro_space.crossover(a, b, rng)
    assert all(c in (x, y) for c, x, y in zip(micro_space.encode(child), micro_space.encode(a), micro_space.encode(b)))


def test_enumerate_covers_small_space(tmp_path):
    path = write_space(tmp_path, """
name: small
teacher: {teacher}
candidates: {resnet: [teacher, identity]}
stages: [{name: a, units: ["down_blocks.0.*"]}, {name: b, units: ["up_blocks.2.*"]}]
""")
    space = search_spaces.load(path)
    archs = list(space.enumerate())
    assert len(archs) == space.size == 4 and len(set(archs)) == 4


BASE = """
name: bad
teacher: {teacher}
candidates:
  resnet: [teacher, identity]
stages:
  - {name: down, units: ["down_blocks.*"]}
"""


@pytest.mark.parametrize(("text", "expected"), [
    ("name: x\nstages: [\n", r"space.yaml: malformed YAML"),
    (BASE.replace("identity", "no_such_op"), r"space.yaml: candidates.resnet.1.op: unknown op 'no_such_op' \(allowed: .*identity"),
    (BASE.replace("identity", "{op: slim_resnet, depth: 2}"), r"candidates.resnet.1: unknown hyperparameter 'depth' for op 'slim_resnet' \(allowed: .*width"),
    (BASE.replace("down_blocks.*", "down_blocks.9.*"), r"stages.0.units: unit pattern 'down_blocks.9.\*' matches no unit"),
    (BASE + '  - {name: again, units: ["down_blocks.0.*"]}\n', r"stages.1.units: stage 'again' overlaps stage 'down'"),
    (BASE.replace("resnet: [teacher", "transformer: [{op: slim_resnet, width: 0.5}"), r"op 'slim_resnet' cannot replace transformer units"),
    (BASE.replace("resnet:", "conv:"), r"unknown unit kind 'conv'"),
    (BASE + "extra_key: 1\n", r"space.yaml: extra_key: unknown key \(allowed: candidates, description"),
    (BASE.replace("name: down,", "name: 'a;b',"), r"stages.0.name"),
])
def test_bad_space_files(tmp_path, text, expected):
    path = write_space(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as info:
        search_spaces.load(path)
    assert "\n" not in str(info.value)


def test_unknown_space_name_lists_shipped():
    with pytest.raises(ConfigError, match=r"unknown search space 'nope' \(allowed: .*tiny_ldm"):
        search_spaces.load("nope")


@pytest.mark.parametrize(("text", "expected"), [
    ("down:R=I;;mid", r"malformed arch string"),
    ("down:X=I", r"malformed arch string: expected K=label"),
    ("down:R=slim(width=0.5", r"unbalanced"),
    ("down:R=nope", r"down:R: unknown candidate 'nope' \(allowed: "),
    ("sideways:R=I", r"unknown decision\(s\) \['sideways:R'\]"),
])
def test_malformed_arch_strings(micro_space, text, expected):
    with pytest.raises(ConfigError, match=expected):
        micro_space.parse(text)
