"""Local plug-ins: a ``.py`` file or an importable module whose import registers ops, strategies, evaluators or
degradations, with no packaging.

Only an explicit list runs code: ``plugins: [my_ops.py, my_pkg.module]`` in a search-space or experiment YAML
(file paths relative to that YAML's folder) or ``tocsr-nas --plugins my_ops.py COMMAND ...``. Each load is
logged (``loaded plugins: ...``); loading the same plug-in twice is a no-op. Everything a plug-in registers is
attributed to it (``plugin <name>``), so a saved compact UNet records which plug-in its ops came from.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

from .errors import ConfigError
from .registry import loading_from

log = logging.getLogger(__name__)

_LOADED: dict[str, str] = {}  # resolved plug-in (absolute file path or module name) -> module name


def plugin_ref(spec: str | Path, base: str | Path | None = None) -> str:
    """The canonical name of a plug-in: the absolute path of a ``.py`` file, or a dotted module name."""
    text = str(spec)
    if text.endswith(".py") or "/" in text or "\\" in text:
        path = Path(text).expanduser()
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        return str(path.resolve())
    return text


def load_plugins(specs: Iterable[str | Path], *, base: str | Path | None = None,
                 source: str | Path | None = None) -> list[str]:
    """Import the plug-ins ``specs`` (files relative to ``base``) once each; return their canonical names.

    Raises:
        ConfigError: a missing file or module, or an exception while importing it (naming the plug-in).
    """
    refs = []
    for spec in specs:
        ref = plugin_ref(spec, base)
        refs.append(ref)
        if ref in _LOADED:
            continue
        with loading_from(f"plugin {ref}"):
            _LOADED[ref] = _import(ref, source)
        log.info("loaded plugins: %s", ref)
    return refs


def load_config_plugins(data: dict, *, source: str | Path, base: str | Path | None = None) -> list[str]:
    """Load the ``plugins:`` list of a raw YAML mapping (before it is validated, so its names resolve)."""
    specs = data.get("plugins") or []
    if not isinstance(specs, list) or not all(isinstance(s, str) and s for s in specs):
        raise ConfigError("must be a list of .py files or module names", source=source, key="plugins")
    return load_plugins(specs, base=base, source=source)


def loaded_plugins() -> list[str]:
    """Canonical names of the plug-ins loaded in this process, in load order."""
    return list(_LOADED)


def _import(ref: str, source: str | Path | None) -> str:
    if not ref.endswith(".py"):
        try:
            importlib.import_module(ref)
        except ModuleNotFoundError as err:
            if err.name and ref.startswith(err.name):
                raise ConfigError(f"plugin module '{ref}' not found", source=source, key="plugins") from None
            raise _failed(ref, err, source) from err
        except Exception as err:
            raise _failed(ref, err, source) from err
        return ref
    path = Path(ref)
    if not path.is_file():
        raise ConfigError(f"plugin file not found: {path}", source=source, key="plugins")
    name = f"tocsr_nas_plugin_{path.stem}_{hashlib.sha256(ref.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise _failed(ref, err, source) from err
    return name


def _failed(ref: str, err: Exception, source: str | Path | None) -> ConfigError:
    if isinstance(err, ConfigError):
        return ConfigError(f"plugin {ref}: {err}", source=source, key="plugins")
    detail = str(err).splitlines()[0] if str(err) else ""
    return ConfigError(f"plugin {ref} failed to load: {type(err).__name__}: {detail}", source=source, key="plugins")
