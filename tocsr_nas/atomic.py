"""Durable files: atomic fsynced writes (text, JSON, bytes, safetensors, whole folders), sha256 checksums, and
checked safetensors reading.

Every write goes to a hidden temporary sibling, is flushed and fsynced, renamed over the target, and the directory
is fsynced, so after a crash (even a power loss) a reader sees either the old file or the complete new one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    import torch


def fsync_dir(folder: str | Path) -> None:
    """Make a rename or a new entry in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    with open(path, "rb+") as stream:
        os.fsync(stream.fileno())


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a hidden sibling of ``path``, fsync it and rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: Any, *, indent: int | None = 1) -> Path:
    """``data`` as JSON (keys in insertion order; ``default=str`` for paths and the like), newline-terminated."""
    return write_text(path, json.dumps(data, indent=indent, default=str) + "\n")


def save_safetensors(path: str | Path, tensors: Mapping[str, torch.Tensor],
                     metadata: Mapping[str, str] | None = None) -> Path:
    """Tensors (made contiguous) as a safetensors file, atomically."""
    from safetensors.torch import save_file  # noqa: PLC0415 (torch only when tensors are written)

    state = {k: v.detach().contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=dict(metadata) if metadata else None))


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file; a missing or unreadable file is a one-line ConfigError."""
    from safetensors import SafetensorError, safe_open  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise ConfigError("weights file not found", source=path)
    try:
        with safe_open(str(path), framework="pt") as stream:
            metadata = dict(stream.metadata() or {})
            tensors = {key: stream.get_tensor(key) for key in stream.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as err:
        raise ConfigError(f"not a readable safetensors file ({str(err).splitlines()[0]})", source=path) from None
    return tensors, metadata


@contextlib.contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``folder`` (an old one is removed), on error it vanishes.

    A reader never sees a half-written ``folder``: a kill mid-write leaves only a hidden ``.name.*`` sibling.
    Every file in it is fsynced before the rename.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file():
                fsync_file(path)
        for path in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            fsync_dir(path)
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, old / folder.name)  # moved aside first: the new one lands in a single rename
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
        fsync_dir(folder.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksums(folder: str | Path, names: Iterable[str]) -> dict[str, str]:
    """A checksum manifest: ``{name: sha256}`` of the files ``names`` in ``folder``."""
    return {name: sha256_file(Path(folder) / name) for name in sorted(names)}


def verify_checksums(folder: str | Path, files: Mapping[str, str], *, what: str = "file") -> None:
    """Refuse (ConfigError naming the file) when a file of a checksum manifest is missing or altered."""
    for name, expected in files.items():
        path = Path(folder) / name
        if not path.is_file():
            raise ConfigError(f"{what} missing", source=path)
        if sha256_file(path) != expected:
            raise ConfigError(f"{what} corrupted (sha256 does not match its manifest)", source=path)


def digest(data: Any, length: int = 16) -> str:
    """A short stable hash of JSON-able data (keys sorted)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:length]
