"""Stage manifests (``stage.json``): what produced a stage folder (resolved config and its hash, seed, versions, git commit).

A stage whose folder holds a *complete* manifest with the same config hash is skipped on a re-run, so a killed
experiment resumes at the first unfinished stage.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

MANIFEST = "stage.json"  # not manifest.json: stage outputs (e.g. surrogate folders) have their own
PACKAGES = ("tocsr-nas", "torch", "diffusers", "botorch", "fvcore", "numpy", "pandas")


def config_hash(config: Any) -> str:
    """A stable hash of a JSON-able config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_commit() -> str | None:
    """The commit of the toolkit's checkout, when it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def is_complete(folder: str | Path, config: Any) -> bool:
    """Whether ``folder`` holds a finished stage made with exactly ``config``."""
    manifest = read_manifest(folder)
    return bool(manifest and manifest.get("status") == "complete" and manifest.get("config_hash") == config_hash(config))


def write_manifest(folder: str | Path, stage: str, config: Any, seed: int, status: str, **extra: Any) -> None:
    """Write ``manifest.json`` atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = {"stage": stage, "status": status, "config": config, "config_hash": config_hash(config), "seed": seed,
            "versions": versions(), "git_commit": git_commit(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, folder / MANIFEST)
