"""``tocsr-nas upscale``: super-resolve an image, or every image of a folder, with an SR model folder."""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..device import add_device_args, device_from_args
from ..errors import ConfigError

log = logging.getLogger(__name__)

MIN_LR_SIDE = 4  # pixels; smaller inputs carry too little to upscale


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..sr.colorfix import COLOR_FIXES  # noqa: PLC0415

    parser = subparsers.add_parser(
        "upscale", help="super-resolve images with an SR model folder",
        description="Upscale one image (or every image in a folder) by the model's scale. Any size works: the "
                    "image is processed in overlapping latent tiles. Grayscale and 16-bit inputs give grayscale "
                    "and 16-bit PNG outputs; an alpha channel is upscaled bicubically and kept.",
        epilog="Examples:\n  tocsr-nas upscale photo.png -o photo_x4.png --model runs/sr_onestep/model\n"
               "  tocsr-nas upscale lr_dir/ -o sr_dir/ --model runs/sr_adapt/model --steps 20 --color-fix wavelet",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="an image file or a folder of images")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output file (.png) or folder")
    parser.add_argument("--model", required=True, type=Path, help="SR model folder (sr-diffusion or sr-onestep)")
    parser.add_argument("--scale", type=int, help="expected scale (must match the model's)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps of an sr-diffusion model (default 50)")
    parser.add_argument("--tile", type=int, default=512, help="tile side in output pixels (default 512)")
    parser.add_argument("--overlap", type=int, default=64, help="tile overlap in output pixels (default 64)")
    parser.add_argument("--color-fix", choices=COLOR_FIXES, default="none", help="colour correction to the LR")
    parser.add_argument("--output-mode", choices=["model", "direct", "residual"], default="model",
                        help="pixels from the latent: the model's mode (default), direct decoding, or bicubic + "
                             "decoded change")
    parser.add_argument("--seed", type=int, default=0, help="seed of the diffusion model's initial noise")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    add_device_args(parser)
    parser.set_defaults(func=run)


def _read(path: Path) -> tuple[torch.Tensor, torch.Tensor | None, bool, bool]:
    """``(rgb, alpha or None, grayscale?, 16-bit?)`` of an image file."""
    from ..data.images import _DECODE_ERRORS, load_image  # noqa: PLC0415

    rgb = load_image(path)
    try:
        with Image.open(path) as image:
            mode = image.mode
            alpha = None
            if "A" in image.getbands() or (mode in {"P", "PA"} and "transparency" in image.info):
                alpha_img = image.convert("RGBA").getchannel("A")
                alpha = torch.from_numpy(np.asarray(alpha_img, dtype=np.float32) / 255.0)[None]
    except _DECODE_ERRORS as err:
        raise ConfigError(f"cannot read image ({err})", source=path) from None
    return rgb, alpha, mode in {"L", "LA", "I;16", "I;16B", "I;16L", "I;16N", "I", "F"}, mode.startswith("I")


def _write(path: Path, rgb: torch.Tensor, alpha: torch.Tensor | None, gray: bool, deep: bool) -> None:
    """Save as PNG: grayscale (16-bit when the input was; with alpha when it had one) or RGB(A) 8-bit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = rgb.clamp(0, 1).permute(1, 2, 0).numpy()
    if gray:
        luma = array.mean(axis=2)
        if deep:
            Image.fromarray((luma * 65535).round().astype(np.uint16)).save(path, format="PNG")
        elif alpha is not None:
            planes = np.stack([luma, alpha.clamp(0, 1)[0].numpy()], axis=2)
            Image.fromarray((planes * 255).round().astype(np.uint8), mode="LA").save(path, format="PNG")
        else:
            Image.fromarray((luma * 255).round().astype(np.uint8), mode="L").save(path, format="PNG")
        return
    if alpha is not None:
        array = np.concatenate([array, alpha.clamp(0, 1).permute(1, 2, 0).numpy()], axis=2)
    Image.fromarray((array * 255).round().astype(np.uint8)).save(path, format="PNG")


def _plan(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """``(input, output)`` pairs; refuses existing outputs unless ``--overwrite``."""
    from ..data.images import list_image_files  # noqa: PLC0415

    if not args.input.exists():
        raise ConfigError("input not found", source=args.input)
    if args.input.is_dir():
        if args.output.exists() and not args.output.is_dir():
            raise ConfigError("output must be a folder when the input is a folder", source=args.output)
        pairs = [(p, args.output / f"{p.stem}.png") for p in list_image_files(args.input)]
    else:
        if args.output.is_dir():
            raise ConfigError("output is a folder; give a file name for a single input", source=args.output)
        pairs = [(args.input, args.output)]
    existing = [str(out) for _, out in pairs if out.exists()]
    if existing and not args.overwrite:
        raise ConfigError(f"output exists ({len(existing)} file(s)); pass --overwrite to replace",
                          source=existing[0], key="--overwrite")
    return pairs


def run(args: argparse.Namespace) -> int:
    from ..sr.model import load_sr_model  # noqa: PLC0415
    from ..sr.pipeline import upsample_lr, upscale_image  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    device, dtype = device_from_args(args)
    pairs = _plan(args)
    model = load_sr_model(args.model)
    if args.scale is not None and args.scale != model.scale:
        raise ConfigError(f"--scale {args.scale} does not match the model", source=args.model, key="scale",
                          allowed=[model.scale])
    folder_mode = args.input.is_dir()
    done: list[Path] = []
    for source, target in pairs:
        try:
            rgb, alpha, gray, deep = _read(source)
            if min(rgb.shape[-2:]) < MIN_LR_SIDE:
                raise ConfigError(f"image is {rgb.shape[-1]}x{rgb.shape[-2]}, smaller than {MIN_LR_SIDE} px",
                                  source=source)
        except ConfigError as err:
            if not folder_mode:
                raise
            log.warning("skipping %s: %s", source, err)
            continue
        start = time.perf_counter()
        sr = upscale_image(model, rgb, steps=args.steps, tile=args.tile, overlap=args.overlap, seed=args.seed,
                           fix=args.color_fix, output=None if args.output_mode == "model" else args.output_mode,
                           device=device, dtype=dtype)
        _write(target, sr, None if alpha is None else upsample_lr(alpha, model.scale), gray, deep)
        seconds = time.perf_counter() - start
        done.append(target)
        print(f"{source} -> {target} ({rgb.shape[-1]}x{rgb.shape[-2]} -> {sr.shape[-1]}x{sr.shape[-2]}, {seconds:.2f} s)")
    return 0 if done or not pairs else 1
