"""``tocsr-nas upscale``: super-resolve an image, or every image of a folder, with an SR model folder."""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..device import add_device_args, device_from_args
from ..errors import ConfigError
from .argtypes import int_range, non_negative_int, positive_int, seed_int
from .paths import (
    check_input_dir,
    check_input_file,
    check_output_dir,
    check_output_file,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

COLOR_FIXES = ("none", "adain", "wavelet")  # sr.colorfix.COLOR_FIXES, spelled out so --help needs no torch

MIN_LR_SIDE = 4  # pixels; smaller inputs carry too little to upscale


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "upscale", help="super-resolve images with an SR model folder",
        description="Upscale one image (or every image in a folder) by the model's scale. Any size works: the "
                    "image is processed in overlapping latent tiles. Grayscale and 16-bit inputs give grayscale "
                    "and 16-bit outputs (8-bit in JPEG and WebP); an alpha channel is upscaled bicubically and "
                    "kept (JPEG has none: use .png, .webp or .tif). The output extension picks the format "
                    "(.png, .jpg/.jpeg, .webp, .tif/.tiff); a folder input gives .png files. Existing outputs are "
                    "refused unless --overwrite. Without --model the shipped x4 model (x4-compact) is used.",
        epilog="Examples:\n  tocsr-nas upscale photo.png -o photo_x4.png\n"
               "  tocsr-nas upscale photo.png -o photo_x4.png --model runs/sr_onestep/model\n"
               "  tocsr-nas upscale lr_dir/ -o sr_dir/ --model runs/sr_adapt/model --steps 20 --color-fix wavelet",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="an image file or a folder of images")
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="output file (.png, .jpg, .webp, .tif) or, for a folder input, a folder")
    parser.add_argument("--model", type=Path,
                        help="SR model folder (sr-diffusion or sr-onestep) or shipped model name (default: x4-compact)")
    parser.add_argument("--scale", type=int_range(1), help="expected scale (must match the model's)")
    parser.add_argument("--steps", type=positive_int, default=50, help="DDIM steps of an sr-diffusion model (default 50)")
    parser.add_argument("--tile", type=positive_int, default=512, help="tile side in output pixels (default 512)")
    parser.add_argument("--overlap", type=non_negative_int, default=64,
                        help="tile overlap in output pixels, less than --tile (default 64)")
    parser.add_argument("--color-fix", choices=COLOR_FIXES, default="none", help="colour correction to the LR")
    parser.add_argument("--output-mode", choices=["model", "direct", "residual"], default="model",
                        help="pixels from the latent: the model's mode (default), direct decoding, or bicubic + "
                             "decoded change")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the diffusion model's initial noise")
    parser.add_argument("--light", action="store_true",
                        help="encode and decode with the model's light VAE (faster, lower PSNR; x4-compact has one)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads for torch (default 1)")
    add_device_args(parser)
    parser.set_defaults(func=run)


def _read(path: Path) -> tuple[torch.Tensor, torch.Tensor | None, bool, bool]:
    """``(rgb, alpha or None, grayscale?, 16-bit?)`` of an image file."""
    import numpy as np  # noqa: PLC0415  (heavy imports only when the command runs)
    import torch  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

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


def _has_alpha(path: Path) -> bool:
    from PIL import Image  # noqa: PLC0415

    with Image.open(path) as image:
        return "A" in image.getbands() or (image.mode in {"P", "PA"} and "transparency" in image.info)


def _write(path: Path, rgb: torch.Tensor, alpha: torch.Tensor | None, gray: bool, deep: bool) -> None:
    """Save in the extension's format: grayscale (16-bit when the input was; with alpha when it had one) or RGB(A)."""
    import numpy as np  # noqa: PLC0415  (heavy imports only when the command runs)
    from PIL import Image  # noqa: PLC0415

    from ..data.images import write_image  # noqa: PLC0415

    array = rgb.clamp(0, 1).permute(1, 2, 0).numpy()
    if gray:
        luma = array.mean(axis=2)
        if deep:
            image = Image.fromarray((luma * 65535).round().astype(np.uint16))
        elif alpha is not None:
            planes = np.stack([luma, alpha.clamp(0, 1)[0].numpy()], axis=2)
            image = Image.fromarray((planes * 255).round().astype(np.uint8), mode="LA")
        else:
            image = Image.fromarray((luma * 255).round().astype(np.uint8), mode="L")
    else:
        if alpha is not None:
            array = np.concatenate([array, alpha.clamp(0, 1).permute(1, 2, 0).numpy()], axis=2)
        image = Image.fromarray((array * 255).round().astype(np.uint8))
    write_image(image, path)


def _plan(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """``(input, output)`` pairs, every input readable and every output writable; nothing is written yet.

    Refuses existing outputs unless ``--overwrite``, an output that would replace its input, an output format
    that cannot hold the image, and a folder with no usable image (unusable ones are skipped with a warning).
    """
    from ..data.images import WRITE_FORMATS, list_image_files, probe_images  # noqa: PLC0415

    if args.overlap >= args.tile:
        raise ConfigError(f"overlap {args.overlap} must be less than the tile ({args.tile})", key="--overlap",
                          allowed=f"0 to {args.tile - 1}")
    if not args.input.exists():
        raise ConfigError("input not found", source=args.input)
    if args.input.is_dir():
        check_input_dir(args.input, key="input")
        check_output_dir(args.output, key="--output")
        files, skipped = probe_images(list_image_files(args.input), MIN_LR_SIDE)
        if not files:
            raise ConfigError(f"no usable image ({len(skipped)} skipped; first: {skipped[0]})", source=args.input)
        for reason in skipped:
            log.warning("skipping %s", reason)
        pairs = [(p, args.output / f"{p.stem}.png") for p in files]
        targets: dict[Path, Path] = {}
        for source, target in pairs:
            if target in targets:
                raise ConfigError(f"{targets[target].name} and {source.name} would both be written to {target.name}",
                                  source=args.input)
            targets[target] = source
    else:
        check_input_file(args.input, key="input")
        if args.output.is_dir():
            raise ConfigError("output is a folder; give a file name for a single input", source=args.output)
        check_output_file(args.output, key="--output", suffixes=sorted(WRITE_FORMATS), overwrite=args.overwrite)
        files, skipped = probe_images([args.input], MIN_LR_SIDE)
        if not files:
            raise ConfigError(skipped[0].removeprefix(f"{args.input}: "), source=args.input)
        if WRITE_FORMATS[args.output.suffix.lower()] == "JPEG" and _has_alpha(args.input):
            raise ConfigError("the input has an alpha channel, which JPEG cannot hold", source=args.output,
                              key="--output", allowed=[".png", ".tif", ".webp"])
        pairs = [(args.input, args.output)]
    existing = [str(out) for _, out in pairs if out.exists()]
    if existing and not args.overwrite:
        raise ConfigError(f"output exists ({len(existing)} file(s)); pass --overwrite to replace",
                          source=existing[0], key="--overwrite")
    for source, target in pairs:
        if target.exists() and target.resolve() == source.resolve():
            raise ConfigError("the output would replace its input", source=target, key="--output")
    return pairs


def check_sr_options(model, *, steps: int, tile: int, source: Path) -> None:
    """Refuse ``--steps`` beyond a diffusion model's schedule and a ``--tile`` below its stride."""
    align = model.vae_factor * model.unet_factor
    if tile < align:
        raise ConfigError(f"tile {tile} is smaller than the model's stride ({align} output pixels)", source=source,
                          key="--tile", allowed=f">= {align}")
    total = int(model.scheduler.config.num_train_timesteps)
    if model.kind == "sr-diffusion" and steps > total:
        raise ConfigError(f"{steps} DDIM steps, but the model was trained with {total} timesteps", source=source,
                          key="--steps", allowed=f"1 to {total}")


def run(args: argparse.Namespace) -> int:
    import torch  # noqa: PLC0415  (heavy imports only when the command runs)

    from ..sr.model import load_sr_model  # noqa: PLC0415
    from ..sr.pipeline import upsample_lr, upscale_image  # noqa: PLC0415
    from ..sr.shipped import resolve_sr_model  # noqa: PLC0415

    pairs = _plan(args)
    folder = check_input_dir(resolve_sr_model(args.model), key="--model")
    model = load_sr_model(folder)
    if args.scale is not None and args.scale != model.scale:
        raise ConfigError(f"--scale {args.scale} does not match the model", source=folder, key="scale",
                          allowed=[model.scale])
    check_sr_options(model, steps=args.steps, tile=args.tile, source=folder)
    if args.light and model.light is None:
        raise ConfigError("this SR model has no light VAE", source=folder, key="--light")
    torch.set_num_threads(args.threads)
    device, dtype = device_from_args(args)
    folder_mode = args.input.is_dir()
    done: list[Path] = []
    for source, target in pairs:
        try:
            rgb, alpha, gray, deep = _read(source)
        except ConfigError as err:
            if not folder_mode:
                raise
            log.warning("skipping %s: %s", source, err)
            continue
        start = time.perf_counter()
        sr = upscale_image(model, rgb, steps=args.steps, tile=args.tile, overlap=args.overlap, seed=args.seed,
                           fix=args.color_fix, output=None if args.output_mode == "model" else args.output_mode,
                           device=device, dtype=dtype, light=args.light)
        _write(target, sr, None if alpha is None else upsample_lr(alpha, model.scale), gray, deep)
        seconds = time.perf_counter() - start
        done.append(target)
        print(f"{source} -> {target} ({rgb.shape[-1]}x{rgb.shape[-2]} -> {sr.shape[-1]}x{sr.shape[-2]}, {seconds:.2f} s)")
    return 0 if done else 1
