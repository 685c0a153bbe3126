"""``tocsr-nas distill-blocks``: distil every candidate of a search space from its teacher units."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..device import add_device_args, device_overrides


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "distill-blocks", help="train the surrogate blocks of a search space by feature distillation",
        description="Train every candidate of every unit to reproduce its teacher unit (one teacher forward per "
                    "step feeds all candidates). Resumes from the checkpoints in --out; finished candidates are "
                    "kept unless their config changed. Writes one safetensors file per candidate, manifest.json, "
                    "relative_errors.csv and report.json into --out.",
        epilog="Examples:\n  tocsr-nas distill-blocks --space tiny_ldm --out runs/x/surrogates\n"
               "  tocsr-nas distill-blocks --config experiments/recipes/distill_blocks.yaml --out runs/x/surrogates "
               "--executor ray --workers 2\n"
               "  tocsr-nas distill-blocks --space tiny_ldm --out runs/x/surrogates --executor ray --address auto",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="surrogate folder (created or resumed)")
    parser.add_argument("--config", type=Path, help="distillation recipe YAML (defaults: see distill_blocks.yaml)")
    parser.add_argument("--space", help="search space name or YAML (overrides the recipe's space)")
    parser.add_argument("--teacher", help="teacher name, config or folder (default: the space's teacher)")
    parser.add_argument("--hr-dir", type=Path, help="image folder whose crops the VAE encodes (default: scikit-image's photographs)")
    parser.add_argument("--steps", type=int, help="optimisation steps per candidate")
    parser.add_argument("--batch-size", type=int, help="noisy latents per teacher forward (one forward per step)")
    parser.add_argument("--mode", choices=["teacher-input", "student-input"], help="what feeds each candidate")
    parser.add_argument("--student-arch", help="student-input mode: the arch whose units feed the candidates")
    parser.add_argument("--student-surrogates", type=Path, help="student-input mode: a surrogate folder with the "
                                                                  "student's trained units")
    parser.add_argument("--loss", choices=["mse", "channel_mse"], help="feature loss")
    parser.add_argument("--cache-dir", type=Path, help="on-disk cache of teacher activations (teacher-input mode)")
    parser.add_argument("--executor", choices=["local", "ray"], help="run in this process or on Ray workers")
    parser.add_argument("--address", help="ray: cluster address ('auto' joins the running cluster); "
                                          "default: a private local instance")
    parser.add_argument("--workers", type=int, help="ray: number of workers (each holds its own teacher copy)")
    parser.add_argument("--retry-failed", action="store_true", help="train candidates that failed before again")
    parser.add_argument("--max-memory-gb", type=float, help="train in unit groups whose step fits this budget in GiB "
                                                            "(measured by probing one step; GPU memory on CUDA)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (groups, estimated memory, teacher "
                                                               "forwards) and exit without training or writing")
    add_device_args(parser)
    parser.set_defaults(func=run)


def _overrides(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    for flag, key in (("space", "space"), ("teacher", "teacher"), ("steps", "steps"), ("batch_size", "batch_size"),
                      ("mode", "mode"), ("student_arch", "student_arch"), ("loss", "loss")):
        if getattr(args, flag) is not None:
            data[key] = getattr(args, flag)
    for flag in ("cache_dir", "student_surrogates"):
        if getattr(args, flag) is not None:
            data[flag] = str(getattr(args, flag))
    data.update(device_overrides(args))
    if args.max_memory_gb is not None:
        data["max_memory_gb"] = args.max_memory_gb
    if args.hr_dir is not None:
        data.setdefault("latents", {})["images"] = str(args.hr_dir)
    executor = data.setdefault("executor", {})
    for flag, key in (("executor", "kind"), ("address", "address"), ("workers", "num_workers")):
        if getattr(args, flag) is not None:
            executor[key] = getattr(args, flag)
    return data


def run(args: argparse.Namespace) -> int:
    from ..config_io import read_mapping, validate  # noqa: PLC0415  (pydantic/yaml only when run)
    from ..distill import DistillConfig, distill_blocks  # noqa: PLC0415 (heavy imports only for this command)

    data = read_mapping(args.config) if args.config is not None else {}
    config = validate(DistillConfig, _overrides(args, data), source=args.config or "command line")
    if args.dry_run:
        print(distill_blocks(config, args.out, dry_run=True).describe())
        return 0
    report = distill_blocks(config, args.out, retry_failed=args.retry_failed)
    summary = report.to_json()
    (args.out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    trained = [r for r in report.records if r.status == "done"]
    print(f"{len(report.records)} candidates: " + ", ".join(f"{n} {s}" for s, n in sorted(report.counts().items())))
    if trained:
        ratios = sorted(r.rel_error / r.rel_error_init for r in trained if r.rel_error_init)
        print(f"held-out relative error after/before training: median {ratios[len(ratios) // 2]:.3g}, "
              f"worst {ratios[-1]:.3g}; worst after: {max(r.rel_error for r in trained):.3g}")
    for record in report.records:
        if record.status == "failed":
            print(f"failed: {record.unit} {record.label}: {record.error}")
    print(f"{report.wall_s:.0f} s, {report.forwards_per_s:.2f} teacher forwards/s; "
          f"wrote {args.out / 'relative_errors.csv'} and {args.out / 'report.json'}")
    return 1 if report.counts().get("failed") else 0
