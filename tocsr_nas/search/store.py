"""The result store: an append-only JSONL log of trials that survives a SIGKILL at any moment.

Line 1 is a header: what the search is and everything its results depend on (``provenance``: space fingerprint,
teacher weights, surrogates and their content hash, evaluators, validation set, strategy and options, seed, ...).
Reopening a store with any different provenance is refused with a one-line error naming the difference; the
budget is not part of it (a longer search over the same folder is a continuation).

Every further line is one trial, written with ``flush`` + ``fsync`` before the strategy hears of it. Trial ids are
0, 1, 2, ... in order. A last line torn by a kill mid-write (no final newline) is dropped when the writer reopens
the store: it was never told to the strategy, so the resumed search evaluates it again. Anything else that is wrong
(a corrupt middle line, a gap or repeat in the ids) is refused, never half-trusted.
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

from ..atomic import fsync_dir
from ..errors import ConfigError

logger = logging.getLogger(__name__)
TRIALS_FILE = "trials.jsonl"
STORE_FORMAT = "tocsr-nas/trials"
STORE_VERSION = 2  # 2: provenance in the header, ``asked`` per trial


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """One stored trial (``asked``: how many archs the strategy was asked for in this trial's batch)."""

    trial_id: int
    arch: str
    arch_id: str
    state: str  # complete | failed | infeasible
    metrics: Mapping[str, float]
    batch: int = 0
    seconds: float = 0.0
    error: str | None = None
    asked: int | None = None

    def to_json(self) -> str:
        metrics = {k: (v if isinstance(v, (int, float)) and math.isfinite(v) else None) for k, v in self.metrics.items()}
        return json.dumps({**dataclasses.asdict(self), "metrics": metrics}, sort_keys=True)


@dataclasses.dataclass
class _Parsed:
    header: dict[str, Any]
    records: list[TrialRecord]
    torn: int  # bytes of a torn last line (0: none)


def _parse(path: Path) -> _Parsed:
    """Read and check a trials log: header, consecutive records; a torn last line is reported, not trusted."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read the trials log ({err.strerror})", source=path) from None
    *complete, tail = raw.split(b"\n")  # a file ending in "\n" has an empty tail
    if not complete:
        raise ConfigError("empty or corrupted trials log (no complete header line)", source=path)
    try:
        header = json.loads(complete[0])
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != STORE_FORMAT:
        raise ConfigError("not a trials log (bad header line)", source=path, key="line 1")
    records = []
    for number, line in enumerate(complete[1:], start=2):
        try:
            data = json.loads(line)
            record = TrialRecord(**data)
            if not isinstance(record.trial_id, int) or not isinstance(record.metrics, dict):
                raise TypeError
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
            raise ConfigError("corrupted trial record: the log is damaged in the middle; restore it or start a new "
                              "search folder", source=path, key=f"line {number}") from None
        if record.trial_id != len(records):
            raise ConfigError(f"trial id {record.trial_id} where {len(records)} was expected (a gap or a repeat: "
                              "the log was edited or written by two processes)", source=path, key=f"line {number}")
        records.append(record)
    return _Parsed(header, records, len(tail))


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def provenance_difference(stored: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """The first difference between two provenance records, as ``"<key> changed (<old> -> <new>)"``."""
    old, new = _flat(stored), _flat(current)
    for key in [*new, *(k for k in old if k not in new)]:  # the current record's order: most telling first
        if old.get(key, "<unset>") != new.get(key, "<unset>"):
            def short(value: Any) -> str:
                text = json.dumps(value, default=str) if not isinstance(value, str) else value
                return text if len(text) <= 40 else text[:12] + "..." + text[-12:]

            return f"{key} changed ({short(old.get(key, '<unset>'))} -> {short(new.get(key, '<unset>'))})"
    return None


class TrialStore:
    """Append-only trials log in ``folder/trials.jsonl`` for the search described by ``header``.

    ``header["provenance"]`` must equal the stored one when the log exists (else a ConfigError naming the first
    difference). The caller holds the folder's lock (:mod:`tocsr_nas.locking`).
    """

    def __init__(self, folder: str | Path, header: Mapping[str, Any]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / TRIALS_FILE
        self.header = {"format": STORE_FORMAT, "version": STORE_VERSION, **header}
        self.records: list[TrialRecord] = []
        if self.path.exists():
            self._reopen()
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._write_lines([json.dumps(self.header, sort_keys=True)])
            fsync_dir(self.folder)

    def _reopen(self) -> None:
        parsed = _parse(self.path)
        check_provenance(parsed.header, self.header, self.path)
        if parsed.torn:
            logger.warning("%s: dropping a torn last line (%d bytes) left by an interrupted write", self.path,
                           parsed.torn)
            with open(self.path, "r+b") as f:
                f.truncate(self.path.stat().st_size - parsed.torn)
                f.flush()
                os.fsync(f.fileno())
        self.records = parsed.records
        self.header = parsed.header

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
        return records_frame(self.records)


def check_provenance(stored: Mapping[str, Any], current: Mapping[str, Any], source: str | Path) -> None:
    """Refuse a stored search whose provenance differs from ``current``'s (one line naming the difference)."""
    if stored.get("version") != STORE_VERSION or "provenance" not in stored:
        raise ConfigError(f"written by another version of tocsr-nas (store version {stored.get('version', 1)}, "
                          f"this one {STORE_VERSION}): use a new search folder", source=source)
    if "provenance" not in current:
        return
    difference = provenance_difference(stored["provenance"], current["provenance"])
    if difference:
        raise ConfigError(f"{difference}: this folder holds another search; use a new --out", source=source)


def records_frame(records: list[TrialRecord]) -> pd.DataFrame:
    """One row per trial; metrics become columns."""
    rows = [{**{k: v for k, v in dataclasses.asdict(r).items() if k != "metrics"}, **dict(sorted(r.metrics.items()))}
            for r in records]
    return pd.DataFrame(rows)


def _path(folder: str | Path) -> Path:
    path = Path(folder) / TRIALS_FILE
    if not path.is_file():
        raise ConfigError(f"no {TRIALS_FILE} here: not a search folder", source=folder)
    return path


def read_trials(folder: str | Path) -> pd.DataFrame:
    """The trials of a search folder as a DataFrame (read-only: a torn last line is ignored, damage refused)."""
    return records_frame(_parse(_path(folder)).records)


def read_header(folder: str | Path) -> dict[str, Any]:
    """The header line of a search folder's trials log."""
    return _parse(_path(folder)).header
