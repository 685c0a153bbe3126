"""``tocsr-nas distill-blocks``: distil every candidate of a search space from its teacher units."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..device import add_device_args, device_overrides
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..distill import DistillConfig


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "distill-blocks", help="train the surrogate blocks of a search space by feature distillation",
        description="Train every candidate of every unit to reproduce its teacher unit (one teacher forward per "
                    "step feeds all candidates). Resumes from the checkpoints in --out (and says so); finished "
                    "candidates are kept unless their config changed. One process per folder. Writes one "
                    "safetensors file per candidate, manifest.json, relative_errors.csv and report.json into --out.",
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


def check_inputs(config: DistillConfig, out: Path) -> None:
    """Refuse bad inputs that would otherwise surface only after the folder is written (one-line ConfigError)."""
    import search_spaces  # noqa: PLC0415

    from ..data.images import resolve_image_files  # noqa: PLC0415
    from ..distill.store import MANIFEST_FILE, SurrogateStore  # noqa: PLC0415
    from ..experiments.manifest import MANIFEST as STAGE_MANIFEST  # noqa: PLC0415

    if out.exists() and not out.is_dir():
        raise ConfigError("exists and is not a folder", source=out)
    if out.is_dir() and not (out / MANIFEST_FILE).exists():
        others = sorted(p.name for p in out.iterdir() if p.name != STAGE_MANIFEST)
        if others:
            raise ConfigError(f"not a surrogate folder (no {MANIFEST_FILE}, holds {others[0]}): use a new --out",
                              source=out)
    space = search_spaces.load(config.space)
    if config.student_arch is not None:
        space.parse(config.student_arch)
    if config.student_surrogates is not None:
        SurrogateStore(config.student_surrogates).manifest()
    latents = config.latents
    if latents.source == "file":
        if latents.file is None or not Path(latents.file).is_file():
            raise ConfigError("latents file not found", source=latents.file, key="latents.file")
    elif latents.source != "gaussian":
        resolve_image_files(latents.images)
    if config.cache_dir is not None and Path(config.cache_dir).exists() and not Path(config.cache_dir).is_dir():
        raise ConfigError("exists and is not a folder", source=config.cache_dir, key="cache_dir")


def stored_statuses(out: Path) -> dict[str, int]:
    """Candidate statuses already recorded in a surrogate folder (empty for a new one)."""
    from ..distill.store import CANDIDATE_DIR, CandidateRecord  # noqa: PLC0415

    counts: dict[str, int] = {}
    for path in sorted((out / CANDIDATE_DIR).glob("*.json")):
        try:
            status = CandidateRecord.from_json(json.loads(path.read_text())).status
        except (OSError, ValueError, TypeError):
            status = "unreadable"
        counts[status] = counts.get(status, 0) + 1
    return counts


def run(args: argparse.Namespace) -> int:
    from ..atomic import write_json  # noqa: PLC0415
    from ..config_io import read_mapping, validate  # noqa: PLC0415  (pydantic/yaml only when run)
    from ..distill import DistillConfig, distill_blocks  # noqa: PLC0415 (heavy imports only for this command)
    from ..locking import folder_lock  # noqa: PLC0415

    data = read_mapping(args.config) if args.config is not None else {}
    config = validate(DistillConfig, _overrides(args, data), source=args.config or "command line")
    check_inputs(config, args.out)
    if args.dry_run:
        print(distill_blocks(config, args.out, dry_run=True).describe())
        return 0
    lock = folder_lock(args.out)
    lock.check()
    with lock:
        stored = stored_statuses(args.out)
        if stored:
            print(f"resuming {args.out}: {sum(stored.values())} candidates stored ("
                  + ", ".join(f"{n} {s}" for s, n in sorted(stored.items())) + ")", flush=True)
        report = distill_blocks(config, args.out, retry_failed=args.retry_failed)
        write_json(args.out / "report.json", report.to_json(), indent=2)
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
