"""``tocsr-nas train-sr``: SR adaptation (``adapt``) or one-step distillation (``onestep``) from a recipe file."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-sr", help="fine-tune an SR diffusion model or distil a one-step SR model",
        description="Train from a recipe; resumes from the newest valid checkpoint in --out. The trained model "
                    "folder is written to OUT/model.",
        epilog="Examples:\n  tocsr-nas train-sr adapt --config experiments/recipes/sr_adapt.yaml "
               "--hr-dir ../shared/data/sr/CSun_Hays80 --vae runs/vae/vae --out runs/sr_adapt\n"
               "  tocsr-nas train-sr onestep --config experiments/recipes/sr_onestep.yaml "
               "--init runs/sr_adapt/model --out runs/sr_onestep",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", choices=["adapt", "onestep"], help="what to train")
    parser.add_argument("--config", required=True, type=Path, help="recipe YAML file")
    parser.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, metrics, model)")
    parser.add_argument("--hr-dir", type=Path, help="HR image folder (overrides data.source)")
    parser.add_argument("--vae", type=Path, help="adapt only: VAE folder (overrides vae)")
    parser.add_argument("--init", type=Path, help="onestep only: sr-diffusion model folder (overrides init)")
    parser.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints and start over")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config_io import read_mapping, validate  # noqa: PLC0415 (heavy imports only for this command)
    from ..sr.train import SRAdaptRecipe, SROneStepRecipe, run_sr_adapt, run_sr_onestep  # noqa: PLC0415

    data = read_mapping(args.config)
    if args.hr_dir is not None:
        data.setdefault("data", {})["source"] = str(args.hr_dir)
    if args.recipe == "adapt":
        if args.vae is not None:
            data["vae"] = str(args.vae)
        summary = run_sr_adapt(validate(SRAdaptRecipe, data, source=args.config), args.out,
                               resume=not args.no_resume)
    else:
        if args.init is not None:
            data["init"] = str(args.init)
        summary = run_sr_onestep(validate(SROneStepRecipe, data, source=args.config), args.out,
                                 resume=not args.no_resume)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()
                    if not isinstance(v, (dict, list))))
    print(f"wrote {args.out / 'result.json'}")
    return 0
