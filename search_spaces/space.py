"""A resolved search space: decisions (stage x unit kind) over concrete units, each with its candidates.

It offers the capabilities strategies need (Archai's idea): ``sample``, ``mutate``, ``crossover``, ``encode`` /
``decode``, ``one_hot``, ``enumerate``, and ``parse`` for arch strings.

Removing a down or up sampler (the ``drop`` op) removes a whole resolution level: the sampler, its partner on the
other path and every unit between them. A space may offer ``drop`` for a sampler only if every unit of that
region is decided by decisions lying wholly inside it that offer ``drop`` too; :meth:`SearchSpace.canonical`
then maps an arch that removes a sampler to the one that drops its whole region, which is what runs and is costed.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tocsr_nas.arch import KIND_LETTERS, Arch, decision_name, split_arch_string
from tocsr_nas.errors import ConfigError
from tocsr_nas.ops.registry import UNIT_KINDS, check_hparams, get_op

from .schema import CandidateEntry, SpaceConfig


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One op with fixed hyperparameters; ``label`` is its name in arch strings."""

    op: str
    hparams: tuple[tuple[str, Any], ...]
    label: str

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.hparams)


@dataclasses.dataclass(frozen=True)
class Decision:
    """The choice of one candidate for every ``kind`` unit of a stage."""

    name: str
    stage: str
    kind: str
    units: tuple[str, ...]
    candidates: tuple[Candidate, ...]

    def index(self, label: str) -> int:
        for i, candidate in enumerate(self.candidates):
            if candidate.label == label:
                return i
        raise KeyError(label)


def _drop_index(decision: Decision) -> int | None:
    """The index of the plain ``drop`` candidate of ``decision``, if it has one."""
    return next((i for i, c in enumerate(decision.candidates) if c.op == DROP_OP and not c.hparams), None)


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def expand_candidates(entries: list[CandidateEntry], kind: str, *, source: str, key: str) -> tuple[Candidate, ...]:
    """Expand YAML candidate entries (lists of hyperparameter values -> cartesian product) into candidates."""
    candidates: list[Candidate] = []
    for i, entry in enumerate(entries):
        entry_key = f"{key}.{i}"
        if isinstance(entry, str):
            entry = {"op": entry}
        entry = dict(entry)
        name = entry.pop("op", None)
        if not isinstance(name, str):
            raise ConfigError("candidate needs 'op: <name>'", source=source, key=entry_key)
        op = get_op(name, source=source, key=f"{entry_key}.op")
        if kind not in op.kinds:
            raise ConfigError(f"op '{name}' cannot replace {kind} units", source=source, key=f"{entry_key}.op",
                              allowed=sorted(op.kinds))
        check_hparams(op, entry, source=source, key=entry_key)
        grid = {k: v if isinstance(v, list) else [v] for k, v in entry.items()}
        for k, values in grid.items():
            if not values:
                raise ConfigError("empty list of values", source=source, key=f"{entry_key}.{k}")
        for values in itertools.product(*grid.values()):
            hparams = tuple(zip(grid, values))
            body = ",".join(f"{k}={_format_value(v)}" for k, v in hparams)
            label = f"{op.short}({body})" if hparams else op.short
            candidates.append(Candidate(op=name, hparams=hparams, label=label))
    labels = [c.label for c in candidates]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ConfigError(f"duplicate candidates {duplicates}", source=source, key=key)
    if not candidates:
        raise ConfigError("no candidates", source=source, key=key)
    return tuple(candidates)


DROP_OP = "drop"
SAMPLER_KINDS = ("downsampler", "upsampler")


def _block_index(path: str) -> tuple[str, int]:
    """``("down", 2)`` for ``down_blocks.2.resnets.0``, ``("mid", 0)`` for ``mid_block.*``."""
    parts = path.split(".")
    if parts[0] == "mid_block":
        return "mid", 0
    return parts[0].removesuffix("_blocks"), int(parts[1])


def sampler_regions(unit_kinds: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """For each sampler unit with a partner: the units removed with it (one resolution level).

    Down block ``k``'s downsampler pairs with up block ``n-2-k``'s upsampler (``n`` up blocks); the region is
    both samplers, the down blocks after ``k``, the mid block and the up blocks up to ``n-2-k``.
    """
    n_up = 1 + max((i for kind, i in map(_block_index, unit_kinds) if kind == "up"), default=-1)
    regions = {}
    for path, kind in unit_kinds.items():
        if kind not in SAMPLER_KINDS:
            continue
        _, index = _block_index(path)
        level = index if kind == "downsampler" else n_up - 2 - index
        down, up = f"down_blocks.{level}.downsamplers.0", f"up_blocks.{n_up - 2 - level}.upsamplers.0"
        if down not in unit_kinds or up not in unit_kinds:
            continue

        def inside(unit: str, level: int = level) -> bool:
            block, i = _block_index(unit)
            return (block == "mid" or (block == "down" and i > level) or (block == "up" and i <= n_up - 2 - level)
                    or unit == f"down_blocks.{level}.downsamplers.0")

        regions[path] = frozenset(p for p in unit_kinds if inside(p))
    return regions


class SearchSpace:
    """Decisions over a teacher's units; archs pick one candidate label per decision."""

    def __init__(self, config: SpaceConfig, decisions: list[Decision], source: str,
                 regions: Mapping[str, frozenset[str]] | None = None) -> None:
        self.config = config
        self.name = config.name
        self.teacher = config.teacher
        self.latent_size = config.latent_size
        self.source = source
        self.decisions = tuple(decisions)
        self._by_name = {d.name: d for d in self.decisions}
        self.regions = dict(regions or {})  # sampler unit -> the units removed with it
        self._removals = self._resolve_removals(self.regions)

    def _resolve_removals(self, regions: Mapping[str, frozenset[str]]) -> list[tuple[int, int, list[tuple[int, int]]]]:
        """``(decision, its drop index, [(decision, drop index) forced with it])`` for every droppable sampler."""
        owner = {unit: i for i, d in enumerate(self.decisions) for unit in d.units}
        removals = []
        for i, decision in enumerate(self.decisions):
            drop = _drop_index(decision)
            if decision.kind not in SAMPLER_KINDS or drop is None:
                continue
            key = decision.name
            region: set[str] = set()
            for unit in decision.units:
                if unit not in regions:
                    raise ConfigError(f"sampler {unit} has no partner sampler, so it cannot be dropped",
                                      source=self.source, key=key)
                region |= regions[unit]
            forced = []
            for j in sorted({owner.get(unit, -1) for unit in region}):
                other = self.decisions[j] if j >= 0 else None
                missing = sorted(region - set(owner)) if other is None else []
                if missing:
                    raise ConfigError(f"dropping {decision.units[0]} removes {missing[0]}, which no decision covers",
                                      source=self.source, key=key, allowed="stages that offer 'drop' for every unit removed")
                if _drop_index(other) is None or not set(other.units) <= region:
                    raise ConfigError(f"dropping {decision.units[0]} removes units of decision '{other.name}', which "
                                      "must offer 'drop' and lie wholly inside the removed level", source=self.source,
                                      key=key)
                forced.append((j, _drop_index(other)))
            removals.append((i, drop, forced))
        return removals

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def resolve(cls, config: SpaceConfig, unit_kinds: Mapping[str, str], source: str | Path) -> SearchSpace:
        """Match ``config``'s stage patterns against ``unit_kinds`` (unit path -> kind, in forward order)."""
        source = str(source)
        for kind in config.candidates:
            if kind not in UNIT_KINDS:
                raise ConfigError(f"unknown unit kind '{kind}'", source=source, key="candidates", allowed=UNIT_KINDS)
        owner: dict[str, str] = {}
        decisions: list[Decision] = []
        for s, stage in enumerate(config.stages):
            key = f"stages.{s}"
            matched = [p for p in unit_kinds if any(fnmatch.fnmatchcase(p, pattern) for pattern in stage.units)]
            for pattern in stage.units:
                if not any(fnmatch.fnmatchcase(p, pattern) for p in unit_kinds):
                    raise ConfigError(f"unit pattern '{pattern}' matches no unit of teacher '{config.teacher}'",
                                      source=source, key=f"{key}.units", allowed="e.g. " + ", ".join(list(unit_kinds)[:3]))
            for path in matched:
                if path in owner:
                    raise ConfigError(f"stage '{stage.name}' overlaps stage '{owner[path]}' at unit {path}",
                                      source=source, key=f"{key}.units")
                owner[path] = stage.name
            for kind in stage.candidates:
                if kind not in UNIT_KINDS:
                    raise ConfigError(f"unknown unit kind '{kind}'", source=source, key=f"{key}.candidates", allowed=UNIT_KINDS)
            lists = {**config.candidates, **stage.candidates}
            groups = [(path, [path]) for path in matched] if stage.per_unit else [(stage.name, matched)]
            for group_name, paths in groups:
                for kind in UNIT_KINDS:
                    units = tuple(p for p in paths if unit_kinds[p] == kind)
                    if not units or kind not in lists:
                        continue  # no candidates for this kind: those units stay the teacher's
                    list_key = f"{key}.candidates.{kind}" if kind in stage.candidates else f"candidates.{kind}"
                    candidates = expand_candidates(lists[kind], kind, source=source, key=list_key)
                    decisions.append(Decision(decision_name(group_name, kind), group_name, kind, units, candidates))
        names = [d.name for d in decisions]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"repeated stage names {repeated}", source=source, key="stages")
        if not decisions:
            raise ConfigError("no stage has candidates for its units", source=source, key="stages")
        return cls(config, decisions, source, sampler_regions(unit_kinds))

    # -- introspection ------------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """The number of architectures."""
        return math.prod(len(d.candidates) for d in self.decisions)

    @property
    def cardinalities(self) -> tuple[int, ...]:
        return tuple(len(d.candidates) for d in self.decisions)

    def decision(self, name: str) -> Decision:
        return self._by_name[name]

    def unit_choices(self, arch: Arch) -> dict[str, Candidate]:
        """Unit path -> chosen candidate, for every unit the space decides on (of the :meth:`canonical` arch)."""
        self.validate(arch)
        arch = self.canonical(arch)
        choices = {}
        for decision, (_, label) in zip(self.decisions, arch.choices):
            candidate = decision.candidates[decision.index(label)]
            for unit in decision.units:
                choices[unit] = candidate
        return choices

    # -- archs --------------------------------------------------------------------------------------------------
    def arch(self, labels: Mapping[str, str] | None = None, *, default: str | None = "T") -> Arch:
        """An arch from ``{decision: label}``; decisions not given take ``default`` (the teacher op)."""
        labels = dict(labels or {})
        unknown = set(labels) - set(self._by_name)
        if unknown:
            raise ConfigError(f"unknown decision(s) {sorted(unknown)}", source=self.source, allowed=list(self._by_name))
        choices = []
        for d in self.decisions:
            label = labels.get(d.name, default)
            if label is None:
                raise ConfigError(f"no choice for decision '{d.name}'", source=self.source)
            choices.append((d.name, label))
        arch = Arch(tuple(choices))
        self.validate(arch)
        return arch

    def teacher_arch(self) -> Arch:
        """The arch that keeps every unit of the teacher."""
        return self.arch()

    def validate(self, arch: Arch) -> None:
        names = tuple(name for name, _ in arch.choices)
        if names != tuple(d.name for d in self.decisions):
            raise ConfigError("arch does not cover this space's decisions", source=self.source, key="arch",
                              allowed=", ".join(d.name for d in self.decisions))
        for decision, (_, label) in zip(self.decisions, arch.choices):
            if label not in {c.label for c in decision.candidates}:
                raise ConfigError(f"unknown candidate '{label}'", source=self.source, key=decision.name,
                                  allowed=[c.label for c in decision.candidates])

    def canonical(self, arch: Arch) -> Arch:
        """The arch that runs: where a sampler is dropped, every decision of its resolution level is ``drop``."""
        if not self._removals:
            return arch
        return self.decode(self.canonical_indices(self.encode(arch)[None])[0])

    def canonical_indices(self, indices: np.ndarray) -> np.ndarray:
        """:meth:`canonical` on candidate-index rows ``(N, n_decisions)`` (a copy)."""
        out = np.array(indices, dtype=np.int64, copy=True)
        for decision, drop, forced in self._removals:
            removed = out[:, decision] == drop
            for j, drop_j in forced:
                out[removed, j] = drop_j
        return out

    def parse(self, text: str) -> Arch:
        """Parse an arch string (``str(arch)``); decisions left out keep the teacher op."""
        try:
            pairs = split_arch_string(text)
        except ValueError as err:
            raise ConfigError(f"malformed arch string: {err}", source=self.source, key="arch",
                              allowed=f"'stage:K=label,...;stage:...' with K in {sorted(KIND_LETTERS.values())}") from None
        return self.arch(dict(pairs))

    def encode(self, arch: Arch) -> np.ndarray:
        """Candidate indices, shape ``(n_decisions,)``."""
        self.validate(arch)
        return np.array([d.index(label) for d, (_, label) in zip(self.decisions, arch.choices)], dtype=np.int64)

    def decode(self, indices: np.ndarray | list[int]) -> Arch:
        return Arch(tuple((d.name, d.candidates[int(i)].label) for d, i in zip(self.decisions, indices, strict=True)))

    def one_hot(self, arch: Arch) -> np.ndarray:
        """Concatenated one-hot encodings, shape ``(sum(cardinalities),)``."""
        out = np.zeros(sum(self.cardinalities), dtype=np.float64)
        offsets = np.cumsum((0, *self.cardinalities[:-1]))
        out[offsets + self.encode(arch)] = 1.0
        return out

    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniformly random arch."""
        return self.decode([rng.integers(n) for n in self.cardinalities])

    def mutate(self, arch: Arch, rng: np.random.Generator, n_changes: int = 1) -> Arch:
        """Change ``n_changes`` random decisions to a different candidate (decisions with one candidate stay)."""
        indices = self.encode(arch)
        mutable = [i for i, n in enumerate(self.cardinalities) if n > 1]
        for i in rng.choice(mutable, size=min(n_changes, len(mutable)), replace=False):
            indices[i] = (indices[i] + rng.integers(1, self.cardinalities[i])) % self.cardinalities[i]
        return self.decode(indices)

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        """Uniform crossover: each decision from ``a`` or ``b`` with equal probability."""
        take_a = rng.random(len(self.decisions)) < 0.5
        return self.decode(np.where(take_a, self.encode(a), self.encode(b)))

    def enumerate(self) -> Iterator[Arch]:
        """Every arch, in index order (only sensible for small spaces)."""
        for indices in itertools.product(*(range(n) for n in self.cardinalities)):
            yield self.decode(indices)

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, teacher={self.teacher!r}, decisions={len(self.decisions)}, size={self.size})"
