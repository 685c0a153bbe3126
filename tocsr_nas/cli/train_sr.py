"""``tocsr-nas train-sr``: SR adaptation (``adapt``), one-step distillation (``onestep``) or a light VAE (``light``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .argtypes import positive_int
from .recipe_args import add_recipe_arguments, read_recipe, write_summary


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-sr", help="fine-tune an SR diffusion model or distil a one-step SR model",
        description="Train from a recipe; resumes from the newest valid checkpoint in --out. The trained model "
                    "folder is written to OUT/model.",
        epilog="Examples:\n  tocsr-nas train-sr adapt --config experiments/recipes/sr_adapt.yaml "
               "--hr-dir ../shared/data/sr/CSun_Hays80 --vae runs/vae/vae --out runs/sr_adapt\n"
               "  tocsr-nas train-sr onestep --config experiments/recipes/sr_onestep.yaml "
               "--init runs/sr_adapt/model --out runs/sr_onestep\n"
               "  tocsr-nas train-sr light --config experiments/recipes/sr_light_vae.yaml "
               "--hr-dir ../shared/data/sr/CSun_Hays80 --out runs/sr_light",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_arguments(parser, ["adapt", "onestep", "light"], out_help="run folder (checkpoints, metrics, model)",
                         hr_help="HR image folder (overrides data.source)")
    parser.add_argument("--vae", type=Path, help="adapt only: VAE folder (overrides vae)")
    parser.add_argument("--init", type=Path, help="onestep only: sr-diffusion model folder, or an sr-onestep one to "
                                                  "train further (overrides init)")
    parser.add_argument("--export-at", type=positive_int, metavar="STEP",
                        help="stop at STEP (resuming from checkpoints as usual) and export the model of that step")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config_io import validate  # noqa: PLC0415 (heavy imports only for this command)
    from ..sr.train import SRAdaptRecipe, SROneStepRecipe, run_sr_adapt, run_sr_onestep  # noqa: PLC0415

    data = read_recipe(args, folders=("vae", "init"))
    if args.recipe == "adapt":
        if args.vae is not None:
            data["vae"] = str(args.vae)
        summary = run_sr_adapt(validate(SRAdaptRecipe, data, source=args.config), args.out,
                               resume=not args.no_resume, export_at=args.export_at)
    elif args.recipe == "light":
        from ..sr.light_vae import LightVAERecipe, run_light_vae  # noqa: PLC0415

        summary = run_light_vae(validate(LightVAERecipe, data, source=args.config), args.out,
                                resume=not args.no_resume, export_at=args.export_at)
    else:
        if args.init is not None:
            data["init"] = str(args.init)
        summary = run_sr_onestep(validate(SROneStepRecipe, data, source=args.config), args.out,
                                 resume=not args.no_resume, export_at=args.export_at)
    write_summary(args.out, summary)
    return 0
