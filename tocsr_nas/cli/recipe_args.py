"""What the recipe commands (``train``, ``train-sr``) share: the common flags, reading the recipe, the summary."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..device import add_device_args, resolve_device, resolve_dtype
from ..errors import ConfigError
from .paths import check_input_dir, check_input_file, check_output_dir


def add_recipe_arguments(parser: argparse.ArgumentParser, recipes: list[str], out_help: str, hr_help: str) -> None:
    """The positional recipe name and ``--config``, ``--out``, ``--hr-dir``, ``--no-resume``."""
    parser.add_argument("recipe", choices=recipes, help="what to train")
    parser.add_argument("--config", required=True, type=Path, help="recipe YAML file")
    parser.add_argument("--out", required=True, type=Path, help=out_help)
    parser.add_argument("--hr-dir", type=Path, help=hr_help)
    parser.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints and start over")
    add_device_args(parser)


def read_recipe(args: argparse.Namespace, *, folders: tuple[str, ...] = (),
                loops: tuple[str, ...] = ("loop",)) -> dict[str, Any]:
    """The recipe file as a mapping, with ``--hr-dir`` (if given) as ``data.source``.

    Checks the paths first: the recipe file, the ``--hr-dir`` and other input ``folders`` (argument names),
    and that ``--out`` is a writable folder, not a run of another recipe (a run of this one is resumed).
    """
    from ..config_io import read_mapping  # noqa: PLC0415  (pydantic/yaml only when run)

    check_input_file(args.config, key="--config")
    for name in ("hr_dir", *folders):
        for folder in _as_list(getattr(args, name)):
            check_input_dir(folder, key=f"--{name.replace('_', '-')}")
    check_output_dir(args.out, key="--out")
    done = args.out / "result.json"
    if done.is_file():
        previous = read_mapping(done).get("recipe")
        if previous is not None and previous not in {args.recipe, f"sr-{args.recipe}"}:
            raise ConfigError(f"holds a '{previous}' run, not '{args.recipe}'", source=args.out, key="--out")
    data = read_mapping(args.config)
    if args.hr_dir is not None:
        data.setdefault("data", {})["source"] = str(args.hr_dir)
    for key in ("device", "dtype"):  # --device/--dtype set those of every training loop of the recipe
        if getattr(args, key) is not None:
            for loop in loops:
                data.setdefault(loop, {})[key] = getattr(args, key)
    for loop in loops:  # a device or dtype this machine cannot run: refused before anything is written
        settings = data.get(loop)
        if isinstance(settings, dict):
            resolve_dtype(str(settings.get("dtype", "float32")), resolve_device(str(settings.get("device", "auto"))))
    return data


def _as_list(value: Any) -> list[Path]:
    return [] if value is None else list(value) if isinstance(value, list) else [value]


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    """Write ``out/result.json`` and print the summary's scalar entries on one line."""
    from ..atomic import write_json  # noqa: PLC0415

    write_json(out / "result.json", summary, indent=2)
    print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()
                    if not isinstance(v, (dict, list))))
    print(f"wrote {out / 'result.json'}")
