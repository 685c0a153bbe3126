"""Mirroring a search's trials into an Optuna journal file, so ``optuna-dashboard PATH`` shows it live.

Whatever the strategy, every stored trial becomes a trial of an Optuna study (two objectives, minimised: the
search's loss and cost metrics) in a ``JournalStorage`` with a file backend. Params are the candidate labels per
decision; user attributes carry the trial id, arch, state and every metric. Complete trials are COMPLETE, failed
ones FAIL, infeasible ones PRUNED. A resumed search adds only the trials the journal lacks (by trial id), so the
journal never holds a trial twice. Needs Optuna (extra ``optuna``), imported when a mirror is built.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from search_spaces import SearchSpace

from ..errors import ConfigError
from .store import TrialRecord


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


class OptunaJournalMirror:
    """Called with each stored :class:`TrialRecord`; writes it to the study ``study_name`` of the journal file."""

    def __init__(self, path: str | Path, space: SearchSpace, *, study_name: str, objectives: list[str],
                 records: Iterable[TrialRecord] = ()) -> None:
        try:
            import optuna  # noqa: PLC0415
            from optuna.storages import JournalStorage  # noqa: PLC0415
            from optuna.storages.journal import JournalFileBackend  # noqa: PLC0415
        except ModuleNotFoundError as err:
            raise ConfigError("--optuna-journal needs the package 'optuna' (pip install tocsr-nas[optuna])",
                              key="optuna_journal") from err
        self._optuna, self.space, self.objectives = optuna, space, list(objectives)
        self.distributions = {d.name: optuna.distributions.CategoricalDistribution([c.label for c in d.candidates])
                              for d in space.decisions}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        storage = JournalStorage(JournalFileBackend(str(path)))
        self.study = optuna.create_study(storage=storage, study_name=study_name, load_if_exists=True,
                                         directions=["minimize"] * len(self.objectives))
        if self.study.metric_names is None:
            with warnings.catch_warnings():  # experimental since Optuna 3.2, still so in 5.0
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names(self.objectives)
        mirrored = {t.user_attrs.get("trial_id") for t in self.study.get_trials(deepcopy=False)}
        for record in records:
            if record.trial_id not in mirrored:
                self(record)

    def __call__(self, record: TrialRecord) -> None:
        state = self._optuna.trial.TrialState
        values = [record.metrics.get(name) for name in self.objectives]
        complete = record.state == "complete" and all(_finite(v) for v in values)
        arch = self.space.parse(record.arch)
        user_attrs: dict[str, Any] = {"trial_id": record.trial_id, "arch": record.arch, "arch_id": record.arch_id,
                                      "state": record.state, "batch": record.batch, "seconds": record.seconds,
                                      **({"error": record.error} if record.error else {}),
                                      **{k: v for k, v in record.metrics.items() if _finite(v)}}
        self.study.add_trial(self._optuna.trial.create_trial(
            params=dict(arch.choices), distributions=self.distributions, user_attrs=user_attrs,
            values=values if complete else None,
            state=state.COMPLETE if complete else state.PRUNED if record.state == "infeasible" else state.FAIL))
