"""Exclusive writers: one process at a time writes a run folder.

The lock is ``fcntl.flock`` on a hidden sibling file ``.<folder name>.lock`` (a sibling, so it outlives a folder
that is replaced atomically and can be taken before the folder exists). The kernel releases it when its process
dies, however it dies; the file holds the owner's pid and start time, for the error message and to log that a
killed owner's lock was taken over. A clean release removes the file.
"""
from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Self

from .errors import ConfigError

logger = logging.getLogger(__name__)
_HELD: dict[Path, int] = {}  # locks this process holds -> nesting depth (re-acquiring one nests)


def lock_path(folder: str | Path) -> Path:
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(text: str) -> tuple[int | None, str]:
    pid, _, since = text.strip().partition(" ")
    return (int(pid) if pid.isdigit() else None), since


class FolderLock:
    """The write lock of ``folder``: :meth:`acquire` refuses (one-line ConfigError) while another process holds it.

    Usable as a context manager. The lock file is removed on release, so a finished command leaves no trace. A
    process may take a lock it holds again (nested: released with the outermost release).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder, self.path = Path(folder), lock_path(folder)
        self._fd: int | None = None

    def check(self) -> None:
        """Refuse now (without taking it) when another process holds the lock: before any slow preparation."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return  # no lock file: nobody holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            if self.path not in _HELD:
                pid, since = _owner(os.pread(fd, 200, 0).decode(errors="replace"))
                raise self._in_use(pid, since) from None
        finally:
            os.close(fd)

    def _in_use(self, pid: int | None, since: str) -> ConfigError:
        owner = f"pid {pid} (since {since})" if pid is not None else "another process"
        return ConfigError(f"in use by {owner}: wait for it to finish or use another folder", source=self.folder)

    def acquire(self) -> FolderLock:
        if self.path in _HELD:  # this process holds it already (e.g. a stage inside `tocsr-nas run`)
            _HELD[self.path] += 1
            self._fd = -1
            return self
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise ConfigError(f"cannot write here ({err.strerror})", source=self.folder) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid, since = _owner(os.pread(fd, 200, 0).decode(errors="replace"))
                os.close(fd)
                raise self._in_use(pid, since) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else its holder removed the file between our open and flock: try again
                break
            os.close(fd)
        previous, since = _owner(os.pread(fd, 200, 0).decode(errors="replace"))
        if previous is not None and previous != os.getpid():
            state = "dead" if not _pid_alive(previous) else "alive but not holding it"
            logger.warning("%s: taking over the stale lock of pid %d (%s, since %s)", self.folder, previous, state,
                           since)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode(), 0)
        self._fd = fd
        _HELD[self.path] = 1
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        _HELD[self.path] -= 1
        if _HELD[self.path]:
            self._fd = None
            return
        del _HELD[self.path]
        self.path.unlink(missing_ok=True)  # while still holding it, so no one locks a file about to vanish
        os.close(self._fd)  # releases the flock
        self._fd = None

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            self.release()

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def folder_lock(folder: str | Path) -> FolderLock:
    """The write lock of ``folder`` (``with folder_lock(out): ...``)."""
    return FolderLock(folder)
