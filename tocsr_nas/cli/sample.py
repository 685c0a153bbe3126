"""``tocsr-nas sample``: draw a DDIM sample grid from a teacher with trained weights."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..device import add_device_args, device_from_args
from ..errors import ConfigError
from .argtypes import float_range, int_range, seed_int
from .paths import check_output_file

MAX_COUNT = 1024  # one grid image


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample", help="draw a grid of DDIM samples from a trained teacher",
        description="Sample latents with DDIM, decode them with the teacher's VAE and save one PNG grid.",
        epilog="Example: tocsr-nas sample --teacher tiny-ldm -n 16 -o grid.png")
    parser.add_argument("--teacher", default="tiny-ldm", help="teacher name or config file with weights: (default tiny-ldm)")
    parser.add_argument("-n", "--count", type=int_range(1, MAX_COUNT), default=16,
                        help=f"number of samples, 1 to {MAX_COUNT} (default 16)")
    parser.add_argument("-o", "--out", type=Path, default=Path("grid.png"),
                        help="output image; the extension picks the format: .png, .jpg, .webp, .tif (default grid.png)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--steps", type=int_range(1), default=50, help="DDIM steps (default 50)")
    parser.add_argument("--eta", type=float_range(0.0, 1.0), default=0.0,
                        help="DDIM eta from 0 (deterministic) to 1 (DDPM-like noise); default 0")
    parser.add_argument("--seed", type=seed_int, default=0, help="noise seed")
    add_device_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.images import WRITE_FORMATS, write_image  # noqa: PLC0415  (heavy imports only for this command)
    from ..teachers import load_teacher  # noqa: PLC0415
    from ..teachers.weights import load_scheduler, weights_folder  # noqa: PLC0415
    from ..training.sampling import image_grid, sample_images  # noqa: PLC0415

    check_output_file(args.out, key="--out", suffixes=sorted(WRITE_FORMATS), overwrite=args.overwrite)
    device, dtype = device_from_args(args)
    teacher = load_teacher(args.teacher)
    folder = weights_folder(args.teacher)
    if folder is None:
        raise ConfigError("teacher has no trained weights (no 'weights:' in its config)", source=args.teacher)
    scheduler = load_scheduler(folder)
    timesteps = int(scheduler.config.num_train_timesteps)
    if args.steps > timesteps:
        raise ConfigError(f"{args.steps} DDIM steps, but the teacher was trained with {timesteps} timesteps",
                          key="--steps", allowed=f"1 to {timesteps}")
    images = sample_images(teacher, scheduler, args.count, steps=args.steps, eta=args.eta, seed=args.seed,
                           device=device, dtype=dtype)
    write_image(image_grid(images), args.out)
    print(f"wrote {args.count} samples ({args.steps} DDIM steps) to {args.out}")
    return 0
