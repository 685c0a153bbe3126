"""The search loop: ask -> cheap evaluators -> feasibility -> expensive evaluators -> store -> tell -> checkpoint.

Crash safety and exact resume: every trial is fsynced to the store (with the size of its batch's ask) before the
strategy is told; after each batch's tell the strategy state is checkpointed atomically with the number of trials
told. On resume the strategy is restored from that checkpoint and the batches stored after it are *re-asked* (the
same ask, so the same RNG consumption) and checked against the store: complete batches are told, a partly stored
batch is finished. So a SIGKILL at any moment (before, inside or after a batch) loses no trial, repeats none, and
the resumed search proposes exactly what the uninterrupted one would have.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from evaluators.base import Evaluator
from search_spaces import SearchSpace
from strategies import Problem, Trial, make_strategy
from strategies.base import Strategy

from ..arch import Arch
from ..atomic import write_json
from ..errors import ConfigError
from ..executors import Executor, LocalExecutor
from ..locking import FolderLock
from ..profiling.cost_table import CostTable, space_fingerprint
from .config import SearchConfig
from .store import TRIALS_FILE, TrialRecord, TrialStore, check_provenance, read_header

logger = logging.getLogger(__name__)
STATE_FILE = "strategy_state.json"
NOT_PROVENANCE = ("budget", "executor", "device", "surrogates", "space")  # a longer budget continues; where it runs and
# the spelling of paths do not change results (the space and surrogates enter by content: fingerprint and hash)


SEARCH_FILES = {TRIALS_FILE, STATE_FILE, "cost_table.json", "stage.json"}


def check_search_folder(out_dir: Path) -> None:
    """Refuse an ``--out`` that is a file or a folder holding anything but a search (nothing else is written into)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError("exists and is not a folder", source=out_dir)
    if out_dir.is_dir() and not (out_dir / TRIALS_FILE).exists():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in SEARCH_FILES)
        if foreign:
            raise ConfigError(f"not a search folder (holds {foreign[0]}): use a new --out", source=out_dir)


def surrogate_errors(config: SearchConfig, space: SearchSpace) -> tuple[tuple[float, ...], ...] | None:
    """The per-decision, per-candidate held-out errors of the search's surrogates (None while the folder does not
    exist yet, e.g. when an experiment validates its search before its surrogates stage has run)."""
    from ..distill.store import MANIFEST_FILE, decision_errors  # noqa: PLC0415

    if config.surrogates is None or not (Path(config.surrogates) / MANIFEST_FILE).is_file():
        return None
    return decision_errors(config.surrogates, space)


def search_strategy(config: SearchConfig, space: SearchSpace, cost: Callable[[Arch], float]) -> Strategy:
    """The configured strategy (its options validated, the budget checked against its initial design)."""
    loss_key, cost_key = config.objectives
    problem = Problem(space=space, cost=cost, loss_key=loss_key, max_cost=config.constraints.get(cost_key),
                      eps=tuple(config.eps), candidate_errors=surrogate_errors(config, space))
    strategy = make_strategy(config.strategy, problem, seed=config.seed, **config.strategy_options)
    if config.budget < strategy.min_trials:
        raise ConfigError(f"budget {config.budget} is smaller than strategy '{config.strategy}' needs for its "
                          f"initial design ({strategy.min_trials})", key="budget")
    return strategy


def search_provenance(config: SearchConfig, space: SearchSpace, evaluators: Sequence[Evaluator],
                      extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything the trials of a search depend on (compared on resume)."""
    return {"space": space.name, "fingerprint": space_fingerprint(space), "teacher": space.teacher, **(extra or {}),
            "strategy": config.strategy, "seed": config.seed,
            "config": {k: v for k, v in config.model_dump(mode="json").items() if k not in NOT_PROVENANCE},
            "evaluators": {f"{i}:{e.name}": e.fingerprint for i, e in enumerate(evaluators)}}


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
                 evaluation_factory: Callable[[], ExpensiveEvaluation] | None = None,
                 provenance: Mapping[str, Any] | None = None) -> None:
        """``evaluation_factory`` (picklable) builds the expensive evaluation on each pool worker (a Ray actor
        then loads the teacher and supernet itself, once); by default the ``expensive`` evaluators are shipped.
        ``provenance`` adds what the trials depend on beyond the config (teacher and surrogates hashes)."""
        self.config, self.out_dir, self.space, self.table = config, Path(out_dir), space, table
        self.cheap, self.expensive = list(cheap), list(expensive)
        self.executor = executor or LocalExecutor()
        self.evaluation_factory = evaluation_factory
        self._pool: Any = None
        self.observers: list[Callable[[TrialRecord], None]] = []  # called with every stored trial (e.g. a mirror)
        self.strategy = search_strategy(config, space, objective_cost(self.cheap, config.objectives[1], space))
        provenance = search_provenance(config, space, [*self.cheap, *self.expensive], provenance)
        header = {"space": space.name, "fingerprint": space_fingerprint(space), "teacher": space.teacher,
                  "strategy": config.strategy, "seed": config.seed, "config": config.model_dump(mode="json"),
                  "provenance": provenance}
        check_search_folder(self.out_dir)
        if (self.out_dir / TRIALS_FILE).exists():  # refused before anything is written (or locked)
            check_provenance(read_header(self.out_dir), header, self.out_dir / TRIALS_FILE)
        self._lock = FolderLock(self.out_dir).acquire()
        self._cache: dict[tuple[str, str, int | None], dict[str, float]] = {}
        self._pending: tuple[list[Arch], list[TrialRecord]] | None = None  # a batch asked but not fully stored
        self._resumed = 0
        try:
            self.store = TrialStore(self.out_dir, header)
            self._restore()
        except BaseException:
            self._lock.release()
            raise

    # -- persistence --------------------------------------------------------------------------------------------
    @property
    def resumed(self) -> int:
        """Trials found in the store when this runner opened it."""
        return self._resumed

    def _read_state(self) -> int:
        """Load the checkpointed strategy state; returns the number of trials it was told."""
        path = self.out_dir / STATE_FILE
        if not path.exists():
            return 0
        try:
            saved = json.loads(path.read_text())
            told, state = int(saved["told"]), saved["state"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError("unreadable strategy state: delete it to replay the search from its trials",
                              source=path) from None
        records = self.store.records
        if told > len(records):
            raise ConfigError(f"the strategy state counts {told} trials but {TRIALS_FILE} holds {len(records)}: the "
                              "log lost trials; restore it or start a new search folder", source=path)
        if 0 < told < len(records) and records[told].batch == records[told - 1].batch:
            raise ConfigError(f"the strategy state ends inside batch {records[told].batch}: it does not belong to "
                              f"this {TRIALS_FILE}", source=path)
        self.strategy.load_state_dict(state)
        return told

    def _restore(self) -> None:
        """Bring the strategy to where the store is: re-ask every batch stored after its checkpoint."""
        told = self._read_state()
        self._resumed = len(self.store)
        batches: list[list[TrialRecord]] = []
        for record in self.store.records[told:]:
            if batches and batches[-1][0].batch == record.batch:
                batches[-1].append(record)
            else:
                batches.append([record])
        for index, batch in enumerate(batches):
            archs = self.strategy.ask(batch[0].asked or len(batch))
            asked, stored = [a.arch_id for a in archs], [r.arch_id for r in batch]
            if asked[: len(stored)] != stored:
                raise ConfigError(f"trial {batch[0].trial_id} onwards is not what this strategy proposes (stored "
                                  f"{stored[0]}, proposed {asked[0] if asked else 'nothing'}): the log was not "
                                  "written by this search; use a new --out", source=self.store.path)
            if len(asked) == len(stored):
                self.strategy.tell([self._as_trial(r) for r in batch])
            elif index == len(batches) - 1:
                self._pending = archs, batch
            else:
                raise ConfigError(f"batch {batch[0].batch} is incomplete but later batches exist", source=self.store.path)
        if len(self.store) > told and self._pending is None:
            self._checkpoint()
        if self.store.records:
            logger.info("resumed %s: %d trials stored", self.out_dir, len(self.store))

    def _checkpoint(self) -> None:
        write_json(self.out_dir / STATE_FILE, {"told": len(self.store), "state": self.strategy.state_dict()},
                   indent=None)

    def close(self) -> None:
        """Release the workers and the folder (done by :meth:`run` when it ends)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self.executor.close()
        self._lock.release()

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
        """Search until ``budget`` expensive evaluations are stored (or the space is exhausted); releases the folder."""
        try:
            self._run(progress)
        finally:
            self.close()
        return self.store.to_frame()

    def _run(self, progress: bool) -> None:
        config = self.config
        max_trials = 20 * config.budget  # infeasible asks are cheap but must not loop forever
        bar = tqdm(total=config.budget, initial=self.evaluations_done, desc=f"search {config.strategy}",
                   disable=not progress, unit="eval")
        batch_index = max((r.batch for r in self.store.records), default=-1) + 1
        if self._pending is not None:  # finish the batch a kill interrupted, exactly as it was asked
            archs, stored = self._pending
            self._pending = None
            self._evaluate_batch(archs, stored, stored[0].batch, len(archs), bar)
        while self.evaluations_done < config.budget and len(self.store) < max_trials:
            n = min(config.batch_size, config.budget - self.evaluations_done)
            archs = self.strategy.ask(n)
            if not archs:
                logger.info("the strategy has no new archs to propose: stopping")
                break
            self._evaluate_batch(archs, [], batch_index, n, bar)
            batch_index += 1
        bar.close()

    def _evaluate_batch(self, archs: list[Arch], stored: list[TrialRecord], batch_index: int, asked: int,
                        bar: Any) -> None:
        """Evaluate and store the archs of a batch not stored yet, then tell the strategy the whole batch."""
        todo = archs[len(stored):]
        cheap = [self._cheap_metrics(arch) for arch in todo]
        feasible = [arch for arch, (_, ok) in zip(todo, cheap) if ok]
        results = dict(zip([a.arch_id for a in feasible], self._evaluate_expensive(feasible)))
        trials = [self._as_trial(r) for r in stored]
        for arch, (metrics, ok) in zip(todo, cheap):
            result = results.get(arch.arch_id, {"metrics": {}, "error": None, "seconds": 0.0})
            state = "infeasible" if not ok else ("failed" if result["error"] else "complete")
            record = TrialRecord(trial_id=len(self.store), arch=str(arch), arch_id=arch.arch_id, state=state,
                                 metrics={**metrics, **result["metrics"]}, batch=batch_index,
                                 seconds=result["seconds"], error=result["error"], asked=asked)
            self.store.append(record)
            for observer in self.observers:
                observer(record)
            trials.append(self._as_trial(record))
            bar.update(state != "infeasible")
        self.strategy.tell(trials)
        self._checkpoint()

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
