"""Teacher profile benchmark: UNet parameters and MACs (fvcore with/without attention, ptflops) per teacher.

Usage::

    python benchmarks/teacher_macs.py [--out benchmarks/results] [--teachers sd15 tiny-ldm]

Writes ``teacher_macs.json`` (raw counts, per-operator breakdown, timings, machine) and ``teacher_macs.md``
(tables and the comparison with published references) to ``--out``. Batch 1, each teacher's default latent
size and context (77 tokens for the SD-shaped teachers), random weights (MACs do not depend on them).
"""
from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

try:
    import tocsr_nas  # noqa: F401
except ImportError:  # run from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tocsr_nas.profiling import count_macs, count_macs_by_operator, count_macs_ptflops, count_params
from tocsr_nas.teachers import load_teacher

TEACHERS = ["sd15", "sd15-16ch", "bk-sdm-base", "bk-sdm-small", "bk-sdm-tiny", "tiny-ldm"]
# Published references. SD-1.5 MACs: BK-SDM paper (thop on the UNet, 64x64 latent; attention matmuls are
# torch functions, not modules, so thop leaves them out). BK-SDM params: approximate, from the paper.
REFERENCES: dict[str, dict[str, float]] = {
    "sd15": {"params": 859.5e6, "gmacs": 339.2},
    "bk-sdm-base": {"params": 0.58e9},
    "bk-sdm-small": {"params": 0.49e9},
    "bk-sdm-tiny": {"params": 0.33e9},
}
MAC_VARIANTS = [("GMACs no attn (fvcore)", "macs_no_attention"), ("GMACs conv+linear", "conv_linear_macs"),
                ("GMACs ptflops aten", "ptflops_aten_macs"), ("GMACs with attn (fvcore)", "macs")]
OPERATORS = ["conv", "linear", "group_norm", "layer_norm", "upsample_nearest2d", "scaled_dot_product_attention"]


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def profile_teacher(name: str) -> dict[str, Any]:
    """Parameters, MAC counts (fvcore, ptflops aten/pytorch) and their wall times for one teacher."""
    teacher, load_s = _timed(load_teacher, name)
    inputs = teacher.example_inputs(batch_size=1)
    unet = teacher.unet
    count, fvcore_s = _timed(count_macs, unet, (), inputs)
    by_operator, by_operator_s = _timed(count_macs_by_operator, unet, (), inputs)
    ptflops_aten, aten_s = _timed(count_macs_ptflops, unet, (), inputs, backend="aten")
    ptflops_pytorch, pytorch_s = _timed(count_macs_ptflops, unet, (), inputs, backend="pytorch")
    return {
        "teacher": name,
        "sample_shape": list(inputs["sample"].shape),
        "context_shape": list(inputs["encoder_hidden_states"].shape),
        "params": count_params(unet),
        "macs": count.macs,
        "macs_no_attention": count.macs_no_attention,
        "attention_macs": count.attention_macs,
        "macs_by_operator": by_operator,
        "conv_linear_macs": by_operator.get("conv", 0) + by_operator.get("linear", 0),
        "ptflops_aten_macs": ptflops_aten,
        "ptflops_pytorch_macs": ptflops_pytorch,
        "seconds": {"load": load_s, "fvcore": fvcore_s, "fvcore_by_operator": by_operator_s,
                    "ptflops_aten": aten_s, "ptflops_pytorch": pytorch_s},
    }


def machine_info() -> dict[str, Any]:
    """Where and with what the benchmark ran."""
    versions = {pkg: importlib.metadata.version(pkg) for pkg in ("torch", "diffusers", "fvcore", "ptflops")}
    return {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average": list(os.getloadavg()),
            "python": platform.python_version(), "versions": versions}


def _g(value: float) -> str:
    return f"{value / 1e9:.2f}"


def _diff(measured: float, reference: float) -> str:
    return f"{100 * (measured - reference) / reference:+.2f}%"


def render_markdown(report: dict[str, Any]) -> str:
    """The Markdown summary of a benchmark report."""
    machine = report["machine"]
    lines = [
        "# Teacher UNet profile: parameters and MACs",
        "",
        f"Date: {report['date']}. Machine: {machine['platform']}, {machine['cpu_count']} CPUs "
        f"({machine['torch_threads']} torch threads, load average {machine['load_average'][0]:.1f} at the start: "
        f"the CPUs are shared, so times are indicative only), Python {machine['python']}, "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()) + ".",
        "",
        "One UNet call, batch 1, random weights. MACs: 1 per multiply-add (G = 1e9). `fvcore` = fvcore's default "
        "handles (conv, linear/matmul, norms, upsample) + our `scaled_dot_product_attention` handle; "
        "`no attn` leaves out the attention matmuls (QK^T and AV, the BK-SDM convention); `conv+linear` is "
        "fvcore's conv and linear part only (no biases). ptflops 0.7.5: `aten` counts conv + mm/addmm/bmm with "
        "biases, `pytorch` counts module hooks + patched functionals; neither sees SDPA. Times are wall seconds.",
        "",
        "| teacher | sample | params (M) | GMACs fvcore | GMACs no attn | attn GMACs | GMACs conv+linear "
        "| GMACs ptflops aten | GMACs ptflops pytorch | s fvcore | s ptflops aten | s ptflops pytorch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["teachers"]:
        s = row["seconds"]
        lines.append(
            f"| {row['teacher']} | {'x'.join(map(str, row['sample_shape']))} | {row['params'] / 1e6:.1f} "
            f"| {_g(row['macs'])} | {_g(row['macs_no_attention'])} | {_g(row['attention_macs'])} "
            f"| {_g(row['conv_linear_macs'])} | {_g(row['ptflops_aten_macs'])} | {_g(row['ptflops_pytorch_macs'])} "
            f"| {s['fvcore']:.1f} | {s['ptflops_aten']:.1f} | {s['ptflops_pytorch']:.1f} |"
        )
    lines += ["", "## Comparison with published references", "",
              "| teacher | quantity | reference | measured | difference |", "|---|---|---:|---:|---:|"]
    for row in report["teachers"]:
        reference = REFERENCES.get(row["teacher"], {})
        if "params" in reference:
            lines.append(f"| {row['teacher']} | params (M) | {reference['params'] / 1e6:.1f} "
                         f"| {row['params'] / 1e6:.1f} | {_diff(row['params'], reference['params'])} |")
        if "gmacs" in reference:
            ref = reference["gmacs"] * 1e9
            for label, key in MAC_VARIANTS:
                lines.append(f"| {row['teacher']} | {label} | {reference['gmacs']:.1f} | {_g(row[key])} "
                             f"| {_diff(row[key], ref)} |")
    lines += ["", "The SD-1.5 reference comes from BK-SDM's `count_macs_params.py`, which runs thop on the UNet: thop "
              "counts `nn.Conv2d`/`nn.Linear` modules (no biases) and a few norm modules, and misses attention "
              "matmuls (torch functions, not modules), so fvcore's `conv+linear` and `no attn` are the comparable "
              "figures. The BK-SDM parameter references are the model card's rounded U-Net sizes (0.58B, 0.49B, "
              "0.33B); the teacher configs have the same UNet shapes as BK-SDM's published "
              "`src/unet_config/bk_{base,small,tiny}/config.json`."]
    lines += ["", "## MACs by operator (fvcore, GMACs)", "",
              "| teacher | " + " | ".join(OPERATORS) + " | other |", "|---|" + "---:|" * (len(OPERATORS) + 1)]
    for row in report["teachers"]:
        ops = row["macs_by_operator"]
        other = sum(v for k, v in ops.items() if k not in OPERATORS)
        lines.append(f"| {row['teacher']} | " + " | ".join(f"{ops.get(k, 0) / 1e9:.3f}" for k in OPERATORS)
                     + f" | {other / 1e9:.3f} |")
    lines += ["", "fvcore's norm counts are estimates (5 per element for an affine norm), and upsample counts 1 per "
              "output element; both are tiny next to conv and linear."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    parser.add_argument("--teachers", nargs="+", default=TEACHERS, help="teacher names (default: all six)")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "machine": machine_info(), "teachers": []}
    for name in args.teachers:
        row = profile_teacher(name)
        report["teachers"].append(row)
        print(f"{name}: {row['params'] / 1e6:.1f}M params, {_g(row['macs'])} GMACs "
              f"({_g(row['macs_no_attention'])} without attention), ptflops aten {_g(row['ptflops_aten_macs'])}")
        gc.collect()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "teacher_macs.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "teacher_macs.md").write_text(render_markdown(report))
    print(f"wrote {args.out / 'teacher_macs.json'} and {args.out / 'teacher_macs.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
