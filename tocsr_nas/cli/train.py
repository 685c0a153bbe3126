"""``tocsr-nas train``: train the embedded default's VAE or its tiny LDM teacher from a recipe file."""
from __future__ import annotations

import argparse
from pathlib import Path

from .recipe_args import add_recipe_arguments, read_recipe, write_summary


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train the 16-channel VAE or the tiny LDM teacher",
        description="Train from a recipe; resumes from the newest valid checkpoint in --out.",
        epilog="Examples:\n  tocsr-nas train vae --config experiments/recipes/train_vae.yaml --hr-dir images/ --out runs/vae\n"
               "  tocsr-nas train teacher --config experiments/recipes/train_teacher.yaml --vae runs/vae/vae "
               "--out runs/teacher",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_arguments(parser, ["vae", "teacher"], out_help="run folder (checkpoints, metrics, results)",
                         hr_help="image folder to train on (overrides data.source)")
    parser.add_argument("--vae", type=Path, help="teacher only: trained VAE folder (vae.json + vae.safetensors)")
    parser.add_argument("--eval-dir", type=Path, action="append", default=[],
                        help="vae only: report whole-image reconstruction PSNR on this folder (repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data = read_recipe(args, folders=("vae", "eval_dir"))
    summary = _train_vae(args, data) if args.recipe == "vae" else _train_teacher(args, data)
    write_summary(args.out, summary)
    return 0


def _train_vae(args: argparse.Namespace, data: dict) -> dict:
    from ..config_io import validate  # noqa: PLC0415  (pydantic/yaml only when run)
    from ..data.images import list_image_files  # noqa: PLC0415  (heavy imports only for this command)
    from ..training.evaluate import reconstruction_psnr  # noqa: PLC0415
    from ..training.vae_recipe import VaeRecipe, run_vae_recipe  # noqa: PLC0415

    recipe = validate(VaeRecipe, data, source=args.config)
    eval_files = {str(d): list_image_files(d) for d in args.eval_dir}
    vae, result = run_vae_recipe(recipe, args.out, resume=not args.no_resume)
    summary = {"recipe": "vae", "steps": result.step, "resumed_from": result.resumed_from, "wall_s": result.wall_s,
               "scaling_factor": float(vae.config.scaling_factor),
               "params": sum(p.numel() for p in vae.parameters()), "final": result.history[-1] if result.history else {}}
    summary["psnr_db"] = {name: reconstruction_psnr(vae, files)["rgb"] for name, files in eval_files.items()}
    return summary


def _train_teacher(args: argparse.Namespace, data: dict) -> dict:
    from ..config_io import validate  # noqa: PLC0415  (pydantic/yaml only when run)
    from ..training.teacher_recipe import TeacherRecipe, run_teacher_recipe  # noqa: PLC0415

    if args.vae is not None:
        data["vae"] = str(args.vae)
    recipe = validate(TeacherRecipe, data, source=args.config)
    return run_teacher_recipe(recipe, args.out, resume=not args.no_resume)
