"""``tocsr-nas evaluate-sr``: PSNR/SSIM-Y of SR models on image folders (standard protocol) and their latency."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..device import add_device_args, device_from_args
from ..errors import ConfigError
from .argtypes import int_range, non_negative_int, positive_int, seed_int
from .paths import check_input_dir, check_input_file, check_output_dir

log = logging.getLogger(__name__)

OUTPUTS = ("per_image.csv", "summary.csv", "summary.md", "results.json", "crops")
CROPS_DIR = "crops"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate-sr", help="evaluate SR models: PSNR/SSIM on Y, bicubic and VAE rows, latency",
        description="GT cropped to a multiple of the scale, bicubic LR (or --degradation: each image's LR seeded by "
                    "--degradation-seed and its file name), PSNR/SSIM on Y with `scale` pixels shaved. "
                    "Writes per_image.csv, summary.csv, summary.md and results.json to --out (and crops/ with "
                    "--compare-crops; refused if they exist unless --overwrite). --model takes a folder or the name "
                    "of a shipped SR model (x4-compact).",
        epilog="Examples:\n  tocsr-nas evaluate-sr --model runs/sr_onestep/model --model runs/sr_adapt/model "
               "--data ../shared/data/sr/CSet5 --scale 4 --out runs/eval_sr\n"
               "  tocsr-nas evaluate-sr --model x4-compact --data ../shared/data/sr/CSet5 --compare-crops 5 "
               "--out runs/eval_shipped\n"
               "  tocsr-nas evaluate-sr --model x4-compact --data ../shared/data/sr/CSet14 "
               "--degradation experiments/recipes/degradation_realesrgan.yaml --degradation-seed 0 --out runs/eval_real",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, action="append", required=True,
                        help="SR model folder or shipped model name (repeatable); named by its folder unless "
                             "NAME=DIR is given")
    parser.add_argument("--data", type=Path, action="append", required=True, help="HR image folder (repeatable)")
    parser.add_argument("--scale", type=int_range(1, 16), default=4, help="SR scale (default 4); must match every model")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the tables")
    parser.add_argument("--overwrite", action="store_true", help="replace the tables of an earlier evaluation in --out")
    parser.add_argument("--steps", type=positive_int, default=50, help="DDIM steps of sr-diffusion models (default 50)")
    parser.add_argument("--tile", type=positive_int, default=512, help="tile side in output pixels (default 512)")
    parser.add_argument("--output-mode", choices=["model", "direct", "residual"], default="model",
                        help="pixels from the latent: each model's own mode (default), or force one")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the diffusion models' noise")
    parser.add_argument("--degradation", default="bicubic",
                        help="how the LR inputs are made: a degradation name (bicubic, realesrgan: defaults at "
                             "--scale) or a YAML/JSON config file with that scale (default bicubic)")
    parser.add_argument("--degradation-seed", type=seed_int, default=0,
                        help="seed of the degraded inputs; image i's LR depends on it and its file name only (default 0)")
    parser.add_argument("--latency-size", type=int_range(1, 4096), default=64, help="LR side of the latency image (default 64)")
    parser.add_argument("--latency-repeats", type=positive_int, default=3, help="timed repeats (median; default 3)")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    parser.add_argument("--compare-crops", type=non_negative_int, default=0, metavar="N",
                        help="write side-by-side crops (LR nearest, bicubic, each model, HR) of the first N images "
                             "of each --data folder to OUT/crops and show them in summary.md (default 0)")
    parser.add_argument("--crop-size", type=int_range(16, 1024), default=128,
                        help="side of the comparison crops in HR pixels (default 128)")
    parser.add_argument("--lpips-backbone", type=Path, help="local AlexNet feature weights (enables LPIPS)")
    parser.add_argument("--lpips-linear", type=Path, help="local LPIPS linear-layer weights (enables LPIPS)")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads for torch (default 1)")
    add_device_args(parser)
    parser.set_defaults(func=run)


def _named_models(specs: list[Path]) -> dict[str, Path]:
    """``NAME=DIR`` or ``DIR`` specs -> {name: folder}; a ``DIR`` is named by its folder (its parent for ``model``).

    ``DIR`` may also be a shipped model's name (:mod:`tocsr_nas.sr.shipped`).
    """
    from ..sr.shipped import resolve_sr_model  # noqa: PLC0415

    named: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = str(spec).partition("=")
        if sep and (not name or not folder):
            raise ConfigError(f"bad model spec '{spec}'", key="--model", allowed="DIR or NAME=DIR")
        path = resolve_sr_model(folder if sep else spec)
        name = name if sep else (path.parent.name if path.name == "model" else path.name)
        if name in named:
            raise ConfigError(f"two models named '{name}'; name them with NAME=DIR", key="--model")
        named[name] = check_input_dir(path, key="--model")
    return named


def _data_files(folders: list[Path], scale: int) -> dict[str, list[Path]]:
    """Every ``--data`` folder's usable images (unusable ones are skipped with a warning; none is an error)."""
    from ..data.images import list_image_files, probe_images  # noqa: PLC0415
    from ..sr.evaluate import min_hr_side  # noqa: PLC0415

    files = {}
    for folder in folders:
        check_input_dir(folder, key="--data")
        if folder.name in files:
            raise ConfigError(f"two --data folders named '{folder.name}'", source=folder, key="--data")
        usable, skipped = probe_images(list_image_files(folder), min_hr_side(scale))
        if not usable:
            raise ConfigError(f"no usable image at scale {scale} ({len(skipped)} skipped; first: {skipped[0]})",
                              source=folder, key="--data")
        for reason in skipped:
            log.warning("skipping %s", reason)
        files[folder.name] = usable
    return files


def _crop_keeper(strips: dict, dataset: str, chosen: list[Path], scale: int, size: int):
    """An ``on_outputs`` hook storing the comparison strip of each ``chosen`` image in ``strips``."""
    from ..sr.crops import compare_strip  # noqa: PLC0415

    def keep(path, lr, hr, outputs) -> None:
        if path in chosen:
            panels = {name: image for name, image in outputs.items() if name != "vae-recon"}
            strips[f"{dataset}-{path.stem}.png"] = compare_strip(lr, hr, panels, scale, size)

    return keep


def run(args: argparse.Namespace) -> int:
    import torch  # noqa: PLC0415  (heavy imports only when the command runs)
    from PIL.Image import Image  # noqa: PLC0415

    from ..data.images import write_image  # noqa: PLC0415
    from ..sr.evaluate import (  # noqa: PLC0415
        eval_degradation,
        evaluate_files,
        markdown_table,
        measure_latency,
        model_method,
        reference_methods,
        summarize,
        write_csv,
    )
    from ..sr.model import load_sr_model  # noqa: PLC0415
    from .upscale import check_sr_options  # noqa: PLC0415

    check_output_dir(args.out, key="--out", outputs=OUTPUTS, overwrite=args.overwrite)
    if (args.lpips_backbone is None) != (args.lpips_linear is None):
        raise ConfigError("LPIPS needs both --lpips-backbone and --lpips-linear", key="--lpips-linear")
    for key, path in (("--lpips-backbone", args.lpips_backbone), ("--lpips-linear", args.lpips_linear)):
        if path is not None:
            check_input_file(path, key=key)
    degradation, degradation_config = eval_degradation(args.degradation, args.scale)
    paths = _named_models(args.model)
    data = _data_files(args.data, args.scale)
    device, dtype = device_from_args(args)
    models = {}
    for name, path in paths.items():
        models[name] = load_sr_model(path)
        if models[name].scale != args.scale:
            raise ConfigError(f"model has scale {models[name].scale}", source=path, key="--scale",
                              allowed=[models[name].scale])
        check_sr_options(models[name], steps=args.steps, tile=args.tile, source=path)
    extra = {}
    if args.lpips_backbone is not None:
        from ..sr.metrics import load_lpips  # noqa: PLC0415

        lpips = load_lpips(args.lpips_backbone, args.lpips_linear)
        extra["lpips"] = lambda sr, hr: float(lpips(sr[None], hr[None]).mean())
    torch.set_num_threads(args.threads)
    first = next(iter(models.values()))
    methods = reference_methods(args.scale, first.vae)
    output = None if args.output_mode == "model" else args.output_mode
    methods.update({name: model_method(m, steps=args.steps, tile=args.tile, seed=args.seed, output=output,
                                       device=device, dtype=dtype) for name, m in models.items()})
    rows = []
    strips: dict[str, Image] = {}  # file name -> comparison strip, written with the tables
    for dataset, files in data.items():
        keep = _crop_keeper(strips, dataset, files[:args.compare_crops], args.scale, args.crop_size)
        rows += evaluate_files(methods, files, args.scale, dataset=dataset, extra_metrics=extra,
                               on_outputs=keep if args.compare_crops else None, degradation=degradation,
                               degradation_seed=args.degradation_seed)
    if not rows:
        raise ConfigError("no image could be evaluated", source=", ".join(map(str, args.data)), key="--data")
    summary = summarize(rows)
    latency = {}
    if not args.no_latency:
        latency = {name: {"kind": m.kind, "steps": 1 if m.kind == "sr-onestep" else args.steps,
                          "seconds": measure_latency(m, args.latency_size, steps=args.steps,
                                                     repeats=args.latency_repeats)}
                   for name, m in models.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "per_image.csv", rows)
    write_csv(args.out / "summary.csv", summary)
    inputs = {"degradation": str(args.degradation), "seed": args.degradation_seed, "config": degradation_config}
    text = (f"# SR evaluation, x{args.scale}\n\nLR inputs: degradation `{inputs['degradation']}`, seed "
            f"{inputs['seed']}; resolved config in results.json (`inputs`).\n\n{markdown_table(summary)}")
    if latency:
        size = f"{args.latency_size}x{args.latency_size} -> {args.latency_size * args.scale}x{args.latency_size * args.scale}"
        text += f"\n## Latency per image ({size}, {torch.get_num_threads()} thread(s))\n\n"
        text += markdown_table([{"model": n, **v} for n, v in latency.items()])
    if strips:
        (args.out / CROPS_DIR).mkdir(exist_ok=True)
        text += "\n## Side-by-side crops\n\nPanels: LR (nearest-neighbour upscaled), " + ", ".join(
            n for n in methods if n != "vae-recon") + f", HR; the {args.crop_size}-px window with most detail.\n\n"
        for name, strip in strips.items():
            write_image(strip, args.out / CROPS_DIR / name)
            text += f"![{name}]({CROPS_DIR}/{name})\n\n"
    (args.out / "summary.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps({"scale": args.scale, "steps": args.steps, "inputs": inputs,
                                                       "summary": summary, "latency": latency}, indent=2) + "\n")
    print(text)
    print(f"wrote {args.out / 'summary.md'}")
    return 0
