"""``tocsr-nas evaluate-sr``: PSNR/SSIM-Y of SR models on image folders (standard protocol) and their latency."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..device import add_device_args, device_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate-sr", help="evaluate SR models: PSNR/SSIM on Y, bicubic and VAE rows, latency",
        description="GT cropped to a multiple of the scale, bicubic LR, PSNR/SSIM on Y with `scale` pixels shaved. "
                    "Writes per_image.csv, summary.csv, summary.md and results.json to --out.",
        epilog="Example:\n  tocsr-nas evaluate-sr --model runs/sr_onestep/model --model runs/sr_adapt/model "
               "--data ../shared/data/sr/CSet5 --scale 4 --out runs/eval_sr",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, action="append", required=True,
                        help="SR model folder (repeatable); named by its folder unless NAME=DIR is given")
    parser.add_argument("--data", type=Path, action="append", required=True, help="HR image folder (repeatable)")
    parser.add_argument("--scale", type=int, default=4, help="SR scale (default 4); must match every model")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the tables")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps of sr-diffusion models (default 50)")
    parser.add_argument("--tile", type=int, default=512, help="tile side in output pixels (default 512)")
    parser.add_argument("--output-mode", choices=["model", "direct", "residual"], default="model",
                        help="pixels from the latent: each model's own mode (default), or force one")
    parser.add_argument("--seed", type=int, default=0, help="seed of the diffusion models' noise")
    parser.add_argument("--latency-size", type=int, default=64, help="LR side of the latency image (default 64)")
    parser.add_argument("--latency-repeats", type=int, default=3, help="timed repeats (median; default 3)")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    parser.add_argument("--lpips-backbone", type=Path, help="local AlexNet feature weights (enables LPIPS)")
    parser.add_argument("--lpips-linear", type=Path, help="local LPIPS linear-layer weights (enables LPIPS)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    add_device_args(parser)
    parser.set_defaults(func=run)


def _named_models(specs: list[Path]) -> dict[str, Path]:
    named = {}
    for spec in specs:
        name, sep, folder = str(spec).partition("=")
        path = Path(folder) if sep else spec
        named[name if sep else (path.parent.name if path.name == "model" else path.name)] = path
    return named


def run(args: argparse.Namespace) -> int:
    from ..data.images import list_image_files  # noqa: PLC0415 (heavy imports only for this command)
    from ..errors import ConfigError  # noqa: PLC0415
    from ..sr.evaluate import (  # noqa: PLC0415
        evaluate_files,
        markdown_table,
        measure_latency,
        model_method,
        reference_methods,
        summarize,
        write_csv,
    )
    from ..sr.model import load_sr_model  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    device, dtype = device_from_args(args)
    models = {}
    for name, path in _named_models(args.model).items():
        models[name] = load_sr_model(path)
        if models[name].scale != args.scale:
            raise ConfigError(f"model has scale {models[name].scale}", source=path, key="--scale",
                              allowed=[models[name].scale])
    extra = {}
    if (args.lpips_backbone is None) != (args.lpips_linear is None):
        raise ConfigError("LPIPS needs both --lpips-backbone and --lpips-linear", key="--lpips-linear")
    if args.lpips_backbone is not None:
        from ..sr.metrics import load_lpips  # noqa: PLC0415

        lpips = load_lpips(args.lpips_backbone, args.lpips_linear)
        extra["lpips"] = lambda sr, hr: float(lpips(sr[None], hr[None]).mean())
    first = next(iter(models.values()))
    methods = reference_methods(args.scale, first.vae)
    output = None if args.output_mode == "model" else args.output_mode
    methods.update({name: model_method(m, steps=args.steps, tile=args.tile, seed=args.seed, output=output,
                                       device=device, dtype=dtype) for name, m in models.items()})
    rows = []
    for folder in args.data:
        rows += evaluate_files(methods, list_image_files(folder), args.scale, dataset=folder.name, extra_metrics=extra)
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
    text = f"# SR evaluation, x{args.scale}\n\n{markdown_table(summary)}"
    if latency:
        size = f"{args.latency_size}x{args.latency_size} -> {args.latency_size * args.scale}x{args.latency_size * args.scale}"
        text += f"\n## Latency per image ({size}, {torch.get_num_threads()} thread(s))\n\n"
        text += markdown_table([{"model": n, **v} for n, v in latency.items()])
    (args.out / "summary.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps({"scale": args.scale, "steps": args.steps, "summary": summary,
                                                       "latency": latency}, indent=2) + "\n")
    print(text)
    print(f"wrote {args.out / 'summary.md'}")
    return 0
