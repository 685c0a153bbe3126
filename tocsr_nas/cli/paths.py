"""Up-front checks of user-given paths, so a command refuses a bad path before it does any work or writes.

Each check raises a one-line :class:`~tocsr_nas.errors.ConfigError` naming the path and the flag: a missing or
unreadable input, an output that exists (unless ``--overwrite``), a file where a folder is needed (or the
reverse), an unwritable place, an output extension the command cannot write.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import ConfigError


def _exists(path: Path, key: str) -> bool:
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as err:
        raise ConfigError(f"cannot access ({err.strerror})", source=path, key=key) from None
    return True


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (tried, so read-only mounts and root count correctly)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _check_creatable(path: Path, key: str, start: Path) -> None:
    """The nearest existing folder at or above ``start`` (where ``path`` will be created) is writable."""
    ancestor = start.absolute()
    while not _exists(ancestor, key):
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"cannot create it: {ancestor} is a file, not a folder", source=path, key=key)
    if not _writable(ancestor):
        raise ConfigError(f"cannot write: folder {ancestor} is not writable", source=path, key=key)


def check_input_file(path: str | Path, *, key: str, suffixes: Iterable[str] | None = None) -> Path:
    """An existing, readable file (with one of ``suffixes``, case-insensitive, when given)."""
    path = Path(path)
    if not _exists(path, key):
        raise ConfigError("file not found", source=path, key=key)
    if path.is_dir():
        raise ConfigError("is a folder, expected a file", source=path, key=key)
    if not os.access(path, os.R_OK):
        raise ConfigError("file is not readable", source=path, key=key)
    if suffixes is not None and path.suffix.lower() not in set(suffixes):
        raise ConfigError(f"unsupported extension '{path.suffix}'", source=path, key=key, allowed=list(suffixes))
    return path


def check_input_dir(path: str | Path, *, key: str) -> Path:
    """An existing, readable folder."""
    path = Path(path)
    if not _exists(path, key):
        raise ConfigError("folder not found", source=path, key=key)
    if not path.is_dir():
        raise ConfigError("is a file, expected a folder", source=path, key=key)
    if not os.access(path, os.R_OK | os.X_OK):
        raise ConfigError("folder is not readable", source=path, key=key)
    return path


def check_output_file(path: str | Path, *, key: str, suffixes: Iterable[str] | None = None,
                      overwrite: bool = False) -> Path:
    """A file the command may write: a known extension, not an existing file unless ``overwrite``, creatable."""
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in set(suffixes):
        problem = f"unsupported extension '{path.suffix}'" if path.suffix else "no file extension"
        raise ConfigError(problem, source=path, key=key, allowed=list(suffixes))
    if _exists(path, key):
        if path.is_dir():
            raise ConfigError("is a folder, expected a file name", source=path, key=key)
        if not overwrite:
            raise ConfigError("file exists; pass --overwrite to replace it", source=path, key=key)
        if not os.access(path, os.W_OK):
            raise ConfigError("file is not writable", source=path, key=key)
    _check_creatable(path, key, path.parent)
    return path


def check_output_dir(path: str | Path, *, key: str, outputs: Iterable[str] = (), overwrite: bool = False) -> Path:
    """A folder the command may write into (it may exist; files in it other than ``outputs`` are left alone).

    Refused: a file at ``path`` or above it, an unwritable place, and an existing output name unless
    ``overwrite``.
    """
    path = Path(path)
    if not _exists(path, key):
        _check_creatable(path, key, path)
        return path
    if not path.is_dir():
        raise ConfigError("is a file, expected a folder", source=path, key=key)
    if not _writable(path):
        raise ConfigError("folder is not writable", source=path, key=key)
    existing = [name for name in outputs if _exists(path / name, key)]
    if existing and not overwrite:
        raise ConfigError(f"holds {existing[0]} from an earlier run; pass --overwrite to replace it", source=path,
                          key=key)
    return path


@contextlib.contextmanager
def removed_if_refused(folder: str | Path) -> Iterator[None]:
    """Remove ``folder`` again when a :class:`ConfigError` ends the block and the folder did not exist before it.

    For commands that can only find some bad input (a corrupt table, an unknown arch) after they started writing:
    a refusal then leaves nothing behind, and nothing the command did not create is touched.
    """
    folder = Path(folder)
    existed = _exists(folder, "")
    try:
        yield
    except ConfigError:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise
