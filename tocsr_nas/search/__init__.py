"""Searching a space: config, the crash-safe runner, the trials store, and assembling it all from a config."""
from .config import SearchConfig
from .runner import SearchRunner
from .store import TrialRecord, TrialStore, read_header, read_trials

__all__ = ["SearchConfig", "SearchRunner", "TrialRecord", "TrialStore", "read_header", "read_trials"]
