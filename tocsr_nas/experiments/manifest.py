"""Stage manifests (``stage.json``): what produced a stage folder (resolved config, the output hashes of the upstream
stages it read, their combined hash, seed, versions, git commit) and, once complete, the hash of its own output.

A stage whose folder holds a *complete* manifest with the same hash is skipped on a re-run, so a killed experiment
resumes at the first unfinished stage; an upstream stage that produced other outputs changes the hash, so
everything downstream of it runs again.
"""
from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from ..atomic import checksums, digest, write_json

MANIFEST = "stage.json"  # not manifest.json: stage outputs (e.g. surrogate folders) have their own
PACKAGES = ("tocsr-nas", "torch", "diffusers", "botorch", "fvcore", "numpy", "pandas")


def config_hash(config: Any) -> str:
    """A stable hash of a JSON-able config."""
    return digest(config)


def output_hash(folder: str | Path) -> str:
    """The content hash of a stage's outputs: every file but its manifest and hidden files (checksum manifest)."""
    folder = Path(folder)
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return digest(checksums(folder, [str(p.relative_to(folder)) for p in files]))


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
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(folder: str | Path, config: Any) -> bool:
    """Whether ``folder`` holds a finished stage made with exactly ``config``."""
    manifest = read_manifest(folder)
    return bool(manifest and manifest.get("status") == "complete" and manifest.get("config_hash") == config_hash(config))


def write_manifest(folder: str | Path, stage: str, config: Any, seed: int, status: str, **extra: Any) -> None:
    """Write ``stage.json`` atomically (fsynced)."""
    data = {"stage": stage, "status": status, "config": config, "config_hash": config_hash(config), "seed": seed,
            "versions": versions(), "git_commit": git_commit(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    write_json(Path(folder) / MANIFEST, data)
