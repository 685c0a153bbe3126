"""Helpers shared by the benchmark scripts: machine description, writing JSON + Markdown results, bad input,
evaluation counts."""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tocsr_nas.errors import ConfigError

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """Where and when a benchmark ran."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_results(name: str, data: dict[str, Any], markdown: str, out_dir: str | Path = RESULTS) -> tuple[Path, Path]:
    """Write ``<name>.json`` and ``<name>.md`` (the Markdown gets a machine/date header)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = data.setdefault("machine", machine())
    header = f"# {name}\n\nMachine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']}" \
             f"{', ' + info['cuda'] if info.get('cuda') else ''}. Date: {info['date']}.\n\n"
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    json_path.write_text(json.dumps(data, indent=1, default=str))
    md_path.write_text(header + markdown)
    return json_path, md_path


def refusing_bad_input(run: Callable[[Any], int], args: Any) -> int:
    """``run(args)``, with a ``ConfigError`` printed as one ``error:`` line and exit code 2 (as the CLI does)."""
    try:
        return run(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def fmt_evals(value: float, budget: int) -> str:
    """An evaluation count, ``>budget`` when it was never reached (inf)."""
    return f">{budget}" if not np.isfinite(value) else f"{value:g}"
