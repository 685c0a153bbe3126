"""The search loop: ask -> cheap evaluators -> feasibility -> expensive evaluators -> store -> tell -> checkpoint.

Crash safety: every trial is fsynced to the store before the strategy is told; the strategy state is checkpointed
(atomically) with the number of trials it has been told. On resume the strategy is restored and told the trials
stored after its checkpoint, so a SIGKILL at any moment loses no recorded trial and repeats none.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from evaluators.base import Evaluator
from search_spaces import SearchSpace
from strategies import Problem, Trial, make_strategy

from ..arch import Arch
from ..errors import ConfigError
from ..executors import Executor, LocalExecutor
from ..profiling.cost_table import CostTable, space_fingerprint
from .config import SearchConfig
from .store import TrialRecord, TrialStore

logger = logging.getLogger(__name__)
STATE_FILE = "strategy_state.json"


def _built(obj: Any) -> Any:
    """The pool factory of an evaluation built here (shipped once to each Ray actor)."""
    return obj


class ExpensiveEvaluation:
    """Runs the expensive evaluators on one arch; errors and non-finite metrics become a failed result.

    Picklable when its evaluators are, so executors can ship it to workers.
    """

    def __init__(self, evaluators: Sequence[Evaluator], budget: int | None, loss_key: str = "loss") -> None:
        self.evaluators, self.budget, self.loss_key = list(evaluators), budget, loss_key

    def __call__(self, arch: Arch) -> dict[str, Any]:
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        try:
            for evaluator in self.evaluators:
                metrics.update(evaluator.evaluate(arch, self.budget))
        except Exception as err:  # noqa: BLE001 (a broken trial is recorded, the search goes on)
            logger.warning("trial %s failed: %s: %s", arch.arch_id, type(err).__name__, err)
            return {"metrics": metrics, "error": f"{type(err).__name__}: {err}", "seconds": time.perf_counter() - start}
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        error = f"non-finite metric(s) {bad}" if bad else None
        if self.loss_key not in metrics:
            error = f"no evaluator produced the loss objective '{self.loss_key}' (got {sorted(metrics)})"
        return {"metrics": metrics, "error": error, "seconds": time.perf_counter() - start}

    def batch(self, archs: list[Arch]) -> list[dict[str, Any]]:
        """One result per arch (a batch is what a pool worker takes at once)."""
        return [self(arch) for arch in archs]


def objective_cost(cheap: Sequence[Evaluator], metric: str, space: SearchSpace) -> Callable[[Arch], float]:
    """The exact cost objective ``metric`` as a function of the arch: from the first cheap evaluator producing it."""
    probe = space.teacher_arch()
    for evaluator in cheap:
        if metric in evaluator.evaluate(probe):
            return lambda arch, evaluator=evaluator: float(evaluator.evaluate(arch)[metric])
    produced = sorted({k for e in cheap for k in e.evaluate(probe)})
    raise ConfigError(f"no cheap evaluator produces the cost objective '{metric}'", key="objectives",
                      allowed=produced)


class SearchRunner:
    """Drives a strategy over a space with cheap and expensive evaluators, storing every trial in ``out_dir``."""

    def __init__(self, config: SearchConfig, out_dir: str | Path, *, space: SearchSpace, table: CostTable,
                 cheap: Sequence[Evaluator], expensive: Sequence[Evaluator], executor: Executor | None = None,
                 evaluation_factory: Callable[[], ExpensiveEvaluation] | None = None) -> None:
        """``evaluation_factory`` (picklable) builds the expensive evaluation on each pool worker (a Ray actor
        then loads the teacher and supernet itself, once); by default the ``expensive`` evaluators are shipped."""
        self.config, self.out_dir, self.space, self.table = config, Path(out_dir), space, table
        self.cheap, self.expensive = list(cheap), list(expensive)
        self.executor = executor or LocalExecutor()
        self.evaluation_factory = evaluation_factory
        self._pool: Any = None
        self.observers: list[Callable[[TrialRecord], None]] = []  # called with every stored trial (e.g. a mirror)
        loss_key, cost_key = config.objectives
        problem = Problem(space=space, cost=objective_cost(self.cheap, cost_key, space), loss_key=loss_key,
                          max_cost=config.constraints.get(cost_key), eps=tuple(config.eps))
        self.strategy = make_strategy(config.strategy, problem, seed=config.seed, **config.strategy_options)
        if config.budget < self.strategy.min_trials:
            raise ConfigError(f"budget {config.budget} is smaller than strategy '{config.strategy}' needs for its "
                              f"initial design ({self.strategy.min_trials})", key="budget")
        header = {"space": space.name, "fingerprint": space_fingerprint(space), "teacher": space.teacher,
                  "strategy": config.strategy, "seed": config.seed, "config": config.model_dump(mode="json")}
        self.store = TrialStore(self.out_dir, header)
        self._cache: dict[tuple[str, str, int | None], dict[str, float]] = {}
        self._restore()

    # -- persistence --------------------------------------------------------------------------------------------
    def _restore(self) -> None:
        state_path = self.out_dir / STATE_FILE
        told = 0
        if state_path.exists():
            saved = json.loads(state_path.read_text())
            self.strategy.load_state_dict(saved["state"])
            told = saved["told"]
        pending = self.store.records[told:]
        if pending:
            self.strategy.tell([self._as_trial(r) for r in pending])
            self._checkpoint()
        if self.store.records:
            logger.info("resumed %s: %d trials stored", self.out_dir, len(self.store))

    def _checkpoint(self) -> None:
        path = self.out_dir / STATE_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"told": len(self.store), "state": self.strategy.state_dict()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _as_trial(self, record: TrialRecord) -> Trial:
        return Trial(arch=self.space.parse(record.arch), metrics=dict(record.metrics), state=record.state)

    # -- the loop -----------------------------------------------------------------------------------------------
    @property
    def evaluations_done(self) -> int:
        """Expensive evaluations so far (complete and failed trials)."""
        return sum(r.state != "infeasible" for r in self.store.records)

    def _cheap_metrics(self, arch: Arch) -> tuple[dict[str, float], bool]:
        metrics: dict[str, float] = {}
        feasible = True
        for evaluator in self.cheap:
            values = evaluator.evaluate(arch)
            metrics.update(values)
            feasible = feasible and evaluator.feasible(values)
        return metrics, feasible

    def run(self, *, progress: bool = True) -> pd.DataFrame:
        """Search until ``budget`` expensive evaluations are stored (or the space is exhausted)."""
        config = self.config
        max_trials = 20 * config.budget  # infeasible asks are cheap but must not loop forever
        bar = tqdm(total=config.budget, initial=self.evaluations_done, desc=f"search {config.strategy}",
                   disable=not progress, unit="eval")
        batch_index = max((r.batch for r in self.store.records), default=-1) + 1
        while self.evaluations_done < config.budget and len(self.store) < max_trials:
            archs = self.strategy.ask(min(config.batch_size, config.budget - self.evaluations_done))
            if not archs:
                logger.info("the strategy has no new archs to propose: stopping")
                break
            cheap = [self._cheap_metrics(arch) for arch in archs]
            feasible = [arch for arch, (_, ok) in zip(archs, cheap) if ok]
            results = dict(zip([a.arch_id for a in feasible], self._evaluate_expensive(feasible)))
            trials = []
            for arch, (metrics, ok) in zip(archs, cheap):
                result = results.get(arch.arch_id, {"metrics": {}, "error": None, "seconds": 0.0})
                state = "infeasible" if not ok else ("failed" if result["error"] else "complete")
                record = TrialRecord(trial_id=len(self.store), arch=str(arch), arch_id=arch.arch_id, state=state,
                                     metrics={**metrics, **result["metrics"]}, batch=batch_index,
                                     seconds=result["seconds"], error=result["error"])
                self.store.append(record)
                for observer in self.observers:
                    observer(record)
                trials.append(self._as_trial(record))
                bar.update(state != "infeasible")
            self.strategy.tell(trials)
            self._checkpoint()
            batch_index += 1
        bar.close()
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self.executor.close()
        return self.store.to_frame()

    def _evaluate_expensive(self, archs: list[Arch]) -> list[dict[str, Any]]:
        """Expensive metrics per arch, from the cache or through the mapper (local or an executor)."""
        keys = [tuple((e.fingerprint, arch.arch_id, self.config.eval_budget) for e in self.expensive) for arch in archs]
        todo = [arch for arch, key in zip(archs, keys) if not all(k in self._cache for k in key)]
        if self._pool is None and todo:  # long-lived workers, each holding the evaluation once
            factory = self.evaluation_factory or functools.partial(
                _built, ExpensiveEvaluation(self.expensive, self.config.eval_budget, self.config.objectives[0]))
            self._pool = self.executor.pool(factory)
        workers = max(1, min(len(todo), self.executor.num_workers))
        batches = [todo[i::workers] for i in range(workers)] if todo else []
        done = [r for batch in self._pool.map("batch", batches) for r in batch] if todo else []
        order = [arch for batch in batches for arch in batch]
        fresh = dict(zip([a.arch_id for a in order], done))
        results = []
        for arch, key in zip(archs, keys):
            if arch.arch_id in fresh:
                result = fresh[arch.arch_id]
                if result["error"] is None:
                    for k in key:
                        self._cache[k] = result["metrics"]
                results.append(result)
            else:
                merged: dict[str, float] = {}
                for k in key:
                    merged.update(self._cache[k])
                results.append({"metrics": merged, "error": None, "seconds": 0.0})
        return results
