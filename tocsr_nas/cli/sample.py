"""``tocsr-nas sample``: draw a DDIM sample grid from a teacher with trained weights."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..device import add_device_args, device_from_args
from ..errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample", help="draw a grid of DDIM samples from a trained teacher",
        description="Sample latents with DDIM, decode them with the teacher's VAE and save one PNG grid.",
        epilog="Example: tocsr-nas sample --teacher tiny-ldm -n 16 -o grid.png")
    parser.add_argument("--teacher", default="tiny-ldm", help="teacher name or config file with weights: (default tiny-ldm)")
    parser.add_argument("-n", "--count", type=int, default=16, help="number of samples (default 16)")
    parser.add_argument("-o", "--out", type=Path, default=Path("grid.png"), help="output PNG (default grid.png)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0 = deterministic)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    add_device_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..teachers import load_teacher  # heavy imports only for this command
    from ..teachers.weights import load_scheduler, weights_folder
    from ..training.sampling import image_grid, sample_images

    if args.count <= 0 or args.steps <= 0:
        raise ConfigError("must be positive", key="--count/--steps")
    device, dtype = device_from_args(args)
    folder = weights_folder(args.teacher)
    if folder is None:
        raise ConfigError("teacher has no trained weights (no 'weights:' in its config)", source=args.teacher)
    teacher = load_teacher(args.teacher)
    images = sample_images(teacher, load_scheduler(folder), args.count, steps=args.steps, eta=args.eta, seed=args.seed,
                           device=device, dtype=dtype)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images).save(args.out)
    print(f"wrote {args.count} samples ({args.steps} DDIM steps) to {args.out}")
    return 0
