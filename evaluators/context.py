"""What a search offers the evaluators it builds: the space, the teacher, the constraints and shared parts.

Evaluators are registered as factories ``factory(context, **options) -> Evaluator`` (see :mod:`evaluators.base`);
the search assembly (``tocsr_nas.search.components``) builds one context per search and calls every evaluator named
in the search config with it. Expensive shared parts (the cost table, the supernet with its surrogates, the
validation set) are built on first use and then shared, so a search that does not need one never builds it.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search_spaces import SearchSpace

CONSTRAINT_METRICS = {"max_gmacs": "gmacs", "max_params_m": "params_m", "max_latency_ms": "latency_ms"}
"""Search-config constraint fields and the metric each bounds (``metric <= bound`` is feasible)."""


@dataclasses.dataclass
class EvaluationContext:
    """One search's view for evaluator factories.

    Attributes:
        space: the search space.
        teacher: the teacher (``tocsr_nas.teachers.Teacher``).
        cache_dir: a folder for tables an evaluator measures once per search (the search folder).
        constraints: upper bounds by metric name (``{"gmacs": 1.5}``); a cheap evaluator enforces the ones it
            produces through ``feasible``.
        shared: zero-argument builders of shared parts by name (``cost_table``, ``supernet``, ``validation``);
            use :meth:`get`, which builds each once.
        surrogates_id: identifies the trained surrogates (for evaluator fingerprints).
    """

    space: SearchSpace
    teacher: Any
    cache_dir: Path
    constraints: dict[str, float]
    shared: dict[str, Callable[[], Any]]
    surrogates_id: str = "untrained"

    def __post_init__(self) -> None:
        self.shared = {name: functools.cache(builder) for name, builder in self.shared.items()}

    def get(self, name: str) -> Any:
        """The shared part ``name``, built on first use."""
        if name not in self.shared:
            raise KeyError(f"the search offers no shared part '{name}' (it has {sorted(self.shared)})")
        return self.shared[name]()
