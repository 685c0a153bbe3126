"""SR quality and latency: the one-step compact SR model (default: the shipped ``x4-compact``) against bicubic,
the VAE's ceiling, its light-VAE path, the SR diffusion model it came from (optional) and teacher-sized models.

1. Quality (standard protocol, :mod:`tocsr_nas.sr.evaluate`): PSNR/SSIM on Y, ``scale`` px shaved, bicubic LR,
   whole images, per image and mean, for ``bicubic``, ``vae-recon`` (the VAE's ceiling for direct decoding), the
   one-step model in every ``--output-modes`` mode, its light-VAE path (when the model has one: the light
   decoder's PSNR cost), the K-step SR diffusion model (``--diffusion``, ``--steps``: residual-shifting sampling
   steps, at most its schedule's) and a trained teacher-sized one-step model (``--onestep-teacher``).
   ``--diffusion-only`` keeps bicubic and the diffusion model (a quicker run for the multi-step model).
2. Latency in one run, same threads, at ``--latency-size`` LR px (and ``--large-size`` with ``--tile`` tiling):
   the one-step compact model (its own output mode, ``direct``, and the light VAE), the SR diffusion model at
   ``--latency-steps`` DDIM steps (with ``--diffusion``), and teacher-sized one-step and ``--latency-steps``
   models (the teacher UNet adapted the same way; latency does not depend on weights, so they are built
   untrained unless ``--onestep-teacher`` gives a trained one). Speed-ups are against the teacher-sized
   ``--latency-steps`` model, measured in the same run.
3. Cost: params and fvcore GMACs per call of each network at the latency size; the compact vs teacher-sized
   one-step table puts the PSNR difference (with a trained ``--onestep-teacher``) next to those ratios.

Usage::

    python benchmarks/sr_quality.py --onestep x4-compact --data ../shared/data/sr/CSet5 \\
        --data ../shared/data/sr/CSet14 [--diffusion runs/sr_adapt/model --steps 20] [--latency-steps 50]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_results  # noqa: E402

from tocsr_nas.data.images import list_image_files  # noqa: E402
from tocsr_nas.profiling.macs import count_macs  # noqa: E402
from tocsr_nas.sr.adapt import adapt_unet  # noqa: E402
from tocsr_nas.sr.evaluate import (  # noqa: E402
    evaluate_files,
    markdown_table,
    measure_latency,
    measure_latent_latency,
    model_method,
    reference_methods,
    summarize,
    write_csv,
)
from tocsr_nas.sr.model import SRModel, load_sr_model  # noqa: E402
from tocsr_nas.sr.shift import ShiftConfig  # noqa: E402
from tocsr_nas.sr.shipped import resolve_sr_model  # noqa: E402
from tocsr_nas.teachers import load_teacher  # noqa: E402


def teacher_sized(like: SRModel, teacher: str, kind: str | None = None) -> SRModel:
    """The teacher UNet adapted like ``like`` (same VAE, schedule and output mode; ``kind`` overrides its kind)."""
    spec = load_teacher(teacher)
    net = adapt_unet(spec.unet, spec.context(1)[0].detach()).eval()
    if kind is None or kind == like.kind:
        return dataclasses.replace(like, net=net)
    return dataclasses.replace(like, net=net, kind=kind, timestep=200 if kind == "sr-onestep" else None,
                               shift=ShiftConfig() if kind == "sr-diffusion" else None)


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def gmacs(model: SRModel, lr_size: int) -> dict[str, float]:
    """fvcore GMACs of one UNet call, the VAE's encoder and decoder (and the light ones) for an ``lr_size`` LR."""
    side = lr_size * model.scale
    latent = torch.zeros(1, model.net.latent_channels, side // model.vae_factor, side // model.vae_factor)
    image = torch.zeros(1, 3, side, side)
    out = {"unet": count_macs(model.net, (latent, latent, torch.tensor([1]))).macs / 1e9,
           "vae_encoder": count_macs(model.vae.encoder, (image,)).macs / 1e9,
           "vae_decoder": count_macs(model.vae.decoder, (latent,)).macs / 1e9}
    if model.light is not None:
        out["light_encoder"] = count_macs(model.light.encoder, (image,)).macs / 1e9
        out["light_decoder"] = count_macs(model.light.decoder, (latent,)).macs / 1e9
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onestep", default="x4-compact", help="sr-onestep model folder or shipped name (compact)")
    parser.add_argument("--diffusion", type=Path, help="sr-diffusion model folder it was distilled from (optional)")
    parser.add_argument("--onestep-teacher", type=Path, help="trained teacher-sized sr-onestep folder (optional)")
    parser.add_argument("--teacher", default="tiny-ldm", help="teacher for the untrained teacher-sized models")
    parser.add_argument("--data", type=Path, action="append", default=[], help="HR folder (repeatable)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--steps", type=int, nargs="+", default=[20], help="DDIM steps of the diffusion model for quality")
    parser.add_argument("--latency-steps", type=int, default=50, help="DDIM steps of the multi-step models for latency")
    parser.add_argument("--latency-size", type=int, default=64, help="LR side of the latency image (64: 256 px out)")
    parser.add_argument("--large-size", type=int, default=0, help="LR side of a second, tiled latency run (0: none)")
    parser.add_argument("--tile", type=int, default=512, help="output-pixel tile of the large latency run")
    parser.add_argument("--latency-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--output-modes", nargs="+", choices=["direct", "residual"], default=["residual"],
                        help="output modes to evaluate the models in (see tocsr_nas.sr.pipeline.to_pixels)")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--diffusion-only", action="store_true",
                        help="quality rows: bicubic and the --diffusion model only (no one-step or VAE rows)")
    parser.add_argument("--name", default="sr_quality",
                        help="results name: OUT/NAME.json and .md (e.g. sr_quality_latency for a latency-only run)")
    args = parser.parse_args()
    if args.diffusion_only and args.diffusion is None:
        parser.error("--diffusion-only needs --diffusion")
    torch.set_num_threads(args.threads)

    onestep_dir = resolve_sr_model(args.onestep)
    onestep = load_sr_model(onestep_dir, kind="sr-onestep")
    diffusion = load_sr_model(args.diffusion, kind="sr-diffusion") if args.diffusion else None
    big = (load_sr_model(args.onestep_teacher, kind="sr-onestep") if args.onestep_teacher
           else teacher_sized(onestep, args.teacher))
    big_multi = teacher_sized(diffusion or onestep, args.teacher, kind="sr-diffusion")
    data: dict = {"scale": args.scale, "steps": args.steps, "latency_steps": args.latency_steps,
                  "models": {"onestep": str(onestep_dir), "diffusion": str(args.diffusion),
                             "onestep_teacher": str(args.onestep_teacher or f"untrained {args.teacher}")},
                  "params": {"onestep-compact": params(onestep.net), "onestep-teacher-sized": params(big.net),
                             "vae": params(onestep.vae)}}
    if onestep.light is not None:
        data["params"]["light_vae"] = params(onestep.light)
    markdown = "Command: `python " + " ".join(sys.argv) + "`\n\n"
    summary: list[dict] = []
    if not args.skip_quality and args.data:
        methods = reference_methods(args.scale, None if args.diffusion_only else onestep.vae)
        for mode in [] if args.diffusion_only else args.output_modes:
            methods[f"onestep-compact/{mode}"] = model_method(onestep, output=mode)
        if onestep.light is not None and not args.diffusion_only:
            methods["onestep-compact/light"] = model_method(onestep, light=True)
        if args.onestep_teacher and not args.diffusion_only:
            methods["onestep-teacher-sized"] = model_method(big)
        for steps in args.steps if diffusion is not None else []:
            for mode in args.output_modes:
                methods[f"diffusion-{steps}step/{mode}"] = model_method(diffusion, steps=steps, output=mode)
        rows = []
        for folder in args.data:
            rows += evaluate_files(methods, list_image_files(folder), args.scale, dataset=folder.name)
        summary = summarize(rows)
        args.out.mkdir(parents=True, exist_ok=True)
        write_csv(args.out / f"{args.name}_per_image.csv", rows)
        data["summary"], data["per_image"] = summary, rows
        markdown += f"## Quality, x{args.scale}, bicubic LR (PSNR/SSIM on Y, {args.scale} px shaved, whole images)\n\n"
        markdown += markdown_table(summary)

    k = args.latency_steps
    teacher_row = f"diffusion-teacher-sized-{k}step"
    runs: dict[str, tuple[SRModel, int, bool]] = {
        "onestep-compact": (onestep, 1, False),
        "onestep-compact/direct": (dataclasses.replace(onestep, output="direct"), 1, False)}
    if onestep.light is not None:
        runs["onestep-compact/light"] = (onestep, 1, True)
    if diffusion is not None:
        runs[f"diffusion-compact-{k}step"] = (diffusion, k, False)
    runs["onestep-teacher-sized"] = (big, 1, False)
    runs[teacher_row] = (big_multi, k, False)
    data["latency"] = {}
    sizes = [] if args.skip_latency else [(args.latency_size, None)] + ([(args.large_size, args.tile)] if args.large_size else [])
    for lr_size, tile in sizes:
        latency = {name: {"end_to_end_s": measure_latency(m, lr_size, steps=steps, repeats=args.latency_repeats,
                                                          light=light, tile=tile),
                          "unet_only_s": measure_latent_latency(m, lr_size, steps=steps, repeats=args.latency_repeats)}
                   for name, (m, steps, light) in runs.items()}
        data["latency"][str(lr_size)] = latency
        ref = latency[teacher_row]
        size = f"{lr_size}x{lr_size} -> {lr_size * args.scale}x{lr_size * args.scale}"
        tiling = f", {tile}-px tiles" if tile else ", untiled"
        markdown += f"\n## Latency per image ({size}{tiling}, {args.threads} thread(s), median of {args.latency_repeats})\n\n"
        markdown += ("end to end = bicubic + encode + UNet call(s) + decode(s) (residual mode decodes the LR latent "
                     "too; `light`: the light VAE); UNet only = the latent-space part. Speed-up = "
                     f"{teacher_row} time / this time, same run.\n\n")
        markdown += markdown_table([{"model": name, "end-to-end s": v["end_to_end_s"],
                                     f"speed-up vs {teacher_row}": ref["end_to_end_s"] / v["end_to_end_s"],
                                     "UNet-only s": v["unet_only_s"],
                                     "UNet-only speed-up": ref["unet_only_s"] / v["unet_only_s"]}
                                    for name, v in latency.items()])

    costs = {"onestep-compact": gmacs(onestep, args.latency_size), "teacher-sized": gmacs(big, args.latency_size)}
    data["gmacs"] = costs
    markdown += f"\n## Cost per call at {args.latency_size * args.scale} px output (fvcore GMACs)\n\n"
    markdown += markdown_table([{"network": f"{name} {part}", "GMACs": value}
                                for name, parts in costs.items() for part, value in parts.items()
                                if name == "onestep-compact" or part == "unet"])
    markdown += "\n" + markdown_table([{"model": name, "params": value} for name, value in data["params"].items()])
    mean = {(r["dataset"], r["method"]): r for r in summary}
    compare = []
    for dataset in dict.fromkeys(r["dataset"] for r in summary):
        small, large = mean.get((dataset, f"onestep-compact/{onestep.output}")), mean.get((dataset, "onestep-teacher-sized"))
        compare.append({"dataset": dataset, "compact psnr_y": small["psnr_y"] if small else "",
                        "teacher-sized psnr_y": large["psnr_y"] if large else "not trained",
                        "psnr difference": small["psnr_y"] - large["psnr_y"] if small and large else "",
                        "ssim difference": small["ssim_y"] - large["ssim_y"] if small and large else "",
                        "params ratio": data["params"]["onestep-teacher-sized"] / data["params"]["onestep-compact"],
                        "GMACs ratio": costs["teacher-sized"]["unet"] / costs["onestep-compact"]["unet"]})
    if compare and not args.diffusion_only:
        markdown += "\n## Compact vs teacher-sized one-step (same recipe)\n\n" + markdown_table(compare)
    json_path, md_path = write_results(args.name, data, markdown, args.out)
    print(markdown)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
