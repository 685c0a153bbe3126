"""The result store: an append-only JSONL log of trials that survives a SIGKILL at any moment.

Line 1 is a header (what the search is: space fingerprint, strategy, seed, ...); every further line is one trial,
written with ``flush`` + ``fsync`` before the strategy hears of it. A line torn by a kill mid-write is dropped when
the store is reopened, so a resumed search neither loses a recorded trial nor repeats one.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError

logger = logging.getLogger(__name__)
TRIALS_FILE = "trials.jsonl"
STORE_FORMAT = "tocsr-nas/trials"


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """One stored trial."""

    trial_id: int
    arch: str
    arch_id: str
    state: str  # complete | failed | infeasible
    metrics: Mapping[str, float]
    batch: int = 0
    seconds: float = 0.0
    error: str | None = None

    def to_json(self) -> str:
        metrics = {k: (v if isinstance(v, (int, float)) and math.isfinite(v) else None) for k, v in self.metrics.items()}
        return json.dumps({**dataclasses.asdict(self), "metrics": metrics}, sort_keys=True)


class TrialStore:
    """Append-only trials log in ``folder/trials.jsonl`` for the search described by ``header``."""

    def __init__(self, folder: str | Path, header: Mapping[str, Any]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / TRIALS_FILE
        self.header = {"format": STORE_FORMAT, **header}
        self.records: list[TrialRecord] = []
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._reopen()
        else:
            self._write_lines([json.dumps(self.header, sort_keys=True)])

    def _reopen(self) -> None:
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # a file ending in "\n" has an empty tail
        if tail:
            logger.warning("%s: dropping a torn last line (%d bytes) left by an interrupted write", self.path, len(tail))
            with open(self.path, "r+b") as f:
                f.truncate(len(raw) - len(tail))
                f.flush()
                os.fsync(f.fileno())
        if not complete:
            raise ConfigError("empty or corrupted trials log (no header line)", source=self.path)
        try:
            stored = json.loads(complete[0])
        except json.JSONDecodeError:
            raise ConfigError("corrupted trials log (bad header line)", source=self.path) from None
        for key in ("format", "space", "fingerprint", "teacher", "strategy", "seed"):
            if key in self.header and stored.get(key) != self.header[key]:
                raise ConfigError(f"written for another search ({key} {stored.get(key)!r}, this one {self.header[key]!r})",
                                  source=self.path, key=key)
        for number, line in enumerate(complete[1:], start=2):
            try:
                self.records.append(TrialRecord(**json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                raise ConfigError(f"corrupted trial record at line {number}", source=self.path) from None
        self.header = stored

    def _write_lines(self, lines: list[str]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())

    def append(self, record: TrialRecord) -> None:
        """Durably append one trial (its id must be the next one)."""
        if record.trial_id != len(self.records):
            raise ValueError(f"trial id {record.trial_id} out of order (next is {len(self.records)})")
        self._write_lines([record.to_json()])
        self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[TrialRecord]:
        return iter(self.records)

    def to_frame(self) -> pd.DataFrame:
        """One row per trial; metrics become columns."""
        rows = [{**{k: v for k, v in dataclasses.asdict(r).items() if k != "metrics"}, **dict(sorted(r.metrics.items()))}
                for r in self.records]
        return pd.DataFrame(rows)


def read_trials(folder: str | Path) -> pd.DataFrame:
    """The trials of a search folder as a DataFrame (read-only; a torn last line is ignored)."""
    path = Path(folder) / TRIALS_FILE
    if not path.is_file():
        raise ConfigError(f"no {TRIALS_FILE} here: not a search folder", source=folder)
    lines = path.read_text().split("\n")[1:-1]
    records = []
    for line in lines:
        data = json.loads(line)
        records.append({**{k: v for k, v in data.items() if k != "metrics"}, **dict(sorted(data["metrics"].items()))})
    return pd.DataFrame(records)


def read_header(folder: str | Path) -> dict[str, Any]:
    """The header line of a search folder's trials log."""
    path = Path(folder) / TRIALS_FILE
    if not path.is_file():
        raise ConfigError(f"no {TRIALS_FILE} here: not a search folder", source=folder)
    with open(path, encoding="utf-8") as f:
        return json.loads(f.readline())
