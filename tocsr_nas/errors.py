"""The one error type users see for bad input: a single line naming where, what and what is allowed."""
from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """Bad user input (a config file, a key, a name, a path).

    The message is one line: ``<source>: <key>: <problem> (allowed: ...)``.
    """

    def __init__(self, problem: str, *, source: str | Path | None = None, key: str | None = None,
                 allowed: object = None) -> None:
        parts = [str(p) for p in (source, key) if p not in (None, "")]
        message = ": ".join([*parts, problem])
        if allowed is not None:
            if isinstance(allowed, (list, tuple, set, frozenset)):
                allowed = ", ".join(str(a) for a in sorted(allowed, key=str))
            message += f" (allowed: {allowed})"
        super().__init__(message.replace("\n", " "))
        self.source, self.key, self.allowed = source, key, allowed
