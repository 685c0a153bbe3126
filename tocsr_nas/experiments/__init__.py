"""Experiments: YAML-defined pipelines (stages, base inheritance, overrides, sweeps) with resumable stage folders."""
from .runner import check_run_count, resolve, run_experiment, stage_folders
from .schema import ExperimentConfig

__all__ = ["ExperimentConfig", "check_run_count", "resolve", "run_experiment", "stage_folders"]
