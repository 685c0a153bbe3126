"""``tocsr-nas expand``: turn a 4-channel teacher (UNet + VAE) into a 16-channel one (VAE distilled, UNet widened)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..device import add_device_args
from ..errors import ConfigError
from .recipe_args import read_recipe, write_summary


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "expand", help="expand a 4-channel teacher's latent to 16 channels (VAE distillation + UNet fine-tuning)",
        description="Expand a teacher's latent: a wider VAE initialised from the old one and distilled from it, the "
                    "UNet's conv_in/conv_out widened (exact on the old subspace at init) and fine-tuned. Writes a "
                    "teacher folder (--teacher OUT for every command); resumes an interrupted run in --out.",
        epilog="Example: tocsr-nas expand --config experiments/recipes/expand_sd15.yaml --teacher /models/sd15 "
               "--hr-dir images/ --out runs/sd15-16ch")
    parser.add_argument("--config", required=True, type=Path, help="expand recipe YAML file")
    parser.add_argument("--out", required=True, type=Path, help="the teacher folder to write (and its checkpoints)")
    parser.add_argument("--teacher", help="source teacher: name, config file with weights, or folder "
                                          "(overrides the recipe's teacher)")
    parser.add_argument("--hr-dir", type=Path, help="image folder to train on (overrides data.source)")
    parser.add_argument("--eval-dir", type=Path, action="append", default=[],
                        help="report old and new VAE reconstruction PSNR (RGB and Y) on this folder (repeatable)")
    parser.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints and start over")
    add_device_args(parser)
    parser.set_defaults(func=run, recipe="expand")  # the kind of run read_recipe checks an existing --out for


def run(args: argparse.Namespace) -> int:
    from ..config_io import validate  # noqa: PLC0415  (heavy imports only for this command)
    from ..data.images import list_image_files  # noqa: PLC0415
    from ..training.evaluate import reconstruction_psnr  # noqa: PLC0415
    from ..training.expand_recipe import ExpandRecipe, load_source, run_expand_recipe  # noqa: PLC0415

    data = read_recipe(args, loops=("vae_loop", "unet_loop"))
    if args.teacher is not None:
        data["teacher"] = args.teacher
    recipe = validate(ExpandRecipe, data, source=args.config)
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError("not a folder", source=args.out, key="--out")
    eval_files = {str(d): list_image_files(d) for d in args.eval_dir}
    source = load_source(recipe.teacher, recipe.channels)
    old_vae = source[0].vae
    old_psnr = {name: reconstruction_psnr(old_vae, files) for name, files in eval_files.items()}
    summary = run_expand_recipe(recipe, args.out, resume=not args.no_resume, source=source)
    if "teacher_folder" in summary:
        from ..teachers import load_teacher  # noqa: PLC0415

        new_vae = load_teacher(args.out).vae
        summary["psnr_db"] = {name: {"old": old_psnr[name], "expanded": reconstruction_psnr(new_vae, files)}
                              for name, files in eval_files.items()}
    write_summary(args.out, summary)
    return 0
