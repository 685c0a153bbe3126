"""SR quality and latency: the one-step compact SR model against the multi-step SR model it was distilled from.

1. Quality (standard protocol, :mod:`tocsr_nas.sr.evaluate`): PSNR/SSIM on Y, ``scale`` px shaved, bicubic LR,
   per image and mean, for ``bicubic``, ``vae-recon`` (the VAE's ceiling for direct decoding), the one-step model
   and the K-step SR diffusion model (``--steps``), each in every ``--output-modes`` mode.
2. Latency in one run, same threads: the one-step compact model (in its own output mode and in ``direct``
   mode, which skips the decode of the LR latent), the SR diffusion model at ``--latency-steps`` DDIM steps,
   and teacher-sized one-step and ``--latency-steps`` models (the teacher UNet adapted the same way; latency
   does not depend on weights, so they are built untrained unless ``--onestep-teacher`` gives a trained one).

Usage::

    python benchmarks/sr_quality.py --onestep runs/sr_onestep/model --diffusion runs/sr_adapt/model \\
        --data ../shared/data/sr/CSet5 --data ../shared/data/sr/CSet14 [--steps 20] [--latency-steps 50]
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
from tocsr_nas.teachers import load_teacher  # noqa: E402


def teacher_sized(like: SRModel, teacher: str) -> SRModel:
    """The teacher UNet adapted like ``like`` (same kind, VAE, schedule, timesteps, output mode)."""
    spec = load_teacher(teacher)
    net = adapt_unet(spec.unet, spec.context(1)[0].detach()).eval()
    return dataclasses.replace(like, net=net)


def params(model: SRModel) -> int:
    return sum(p.numel() for p in model.net.parameters())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onestep", type=Path, required=True, help="sr-onestep model folder (compact)")
    parser.add_argument("--diffusion", type=Path, required=True, help="sr-diffusion model folder it was distilled from")
    parser.add_argument("--onestep-teacher", type=Path, help="trained teacher-sized sr-onestep folder (optional)")
    parser.add_argument("--teacher", default="tiny-ldm", help="teacher for the untrained teacher-sized one-step model")
    parser.add_argument("--data", type=Path, action="append", required=True, help="HR folder (repeatable)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--steps", type=int, nargs="+", default=[20], help="DDIM steps of the diffusion model for quality")
    parser.add_argument("--latency-steps", type=int, default=50, help="DDIM steps of the diffusion model for latency")
    parser.add_argument("--latency-size", type=int, default=64, help="LR side of the latency image")
    parser.add_argument("--latency-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--output-modes", nargs="+", choices=["direct", "residual"], default=["residual", "direct"],
                        help="output modes to evaluate both models in (see tocsr_nas.sr.pipeline.to_pixels)")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    onestep = load_sr_model(args.onestep, kind="sr-onestep")
    diffusion = load_sr_model(args.diffusion, kind="sr-diffusion")
    big = (load_sr_model(args.onestep_teacher, kind="sr-onestep") if args.onestep_teacher
           else teacher_sized(onestep, args.teacher))
    data: dict = {"scale": args.scale, "steps": args.steps, "latency_steps": args.latency_steps,
                  "models": {"onestep": str(args.onestep), "diffusion": str(args.diffusion),
                             "onestep_teacher": str(args.onestep_teacher or f"untrained {args.teacher}")},
                  "params": {"onestep": params(onestep), "diffusion": params(diffusion), "onestep_teacher": params(big)}}
    markdown = ""
    if not args.skip_quality:
        methods = reference_methods(args.scale, onestep.vae)
        for mode in args.output_modes:
            methods[f"onestep-compact/{mode}"] = model_method(onestep, output=mode)
            for steps in args.steps:
                methods[f"diffusion-{steps}step/{mode}"] = model_method(diffusion, steps=steps, output=mode)
        rows = []
        for folder in args.data:
            rows += evaluate_files(methods, list_image_files(folder), args.scale, dataset=folder.name)
        summary = summarize(rows)
        args.out.mkdir(parents=True, exist_ok=True)
        write_csv(args.out / "sr_quality_per_image.csv", rows)
        data["summary"], data["per_image"] = summary, rows
        markdown += f"## Quality, x{args.scale}, bicubic LR (PSNR/SSIM on Y, {args.scale} px shaved)\n\n"
        markdown += markdown_table(summary)
    k = args.latency_steps
    runs = {"onestep-compact": (onestep, 1), "onestep-compact/direct": (dataclasses.replace(onestep, output="direct"), 1),
            f"diffusion-compact-{k}step": (diffusion, k), "onestep-teacher-sized": (big, 1),
            f"diffusion-teacher-sized-{k}step": (teacher_sized(diffusion, args.teacher), k)}
    latency = {name: {"end_to_end_s": measure_latency(m, args.latency_size, steps=k, repeats=args.latency_repeats),
                      "unet_only_s": measure_latent_latency(m, args.latency_size, steps=k, repeats=args.latency_repeats)}
               for name, (m, k) in runs.items()}
    base = latency["onestep-compact"]
    data["latency"] = latency
    size = f"{args.latency_size}x{args.latency_size} -> {args.latency_size * args.scale}x{args.latency_size * args.scale}"
    markdown += f"\n## Latency per image ({size}, {args.threads} thread(s), median of {args.latency_repeats})\n\n"
    markdown += "end to end = bicubic + VAE encode + UNet call(s) + VAE decode(s); UNet only = the latent-space part.\n\n"
    markdown += markdown_table([{"model": name, "end-to-end s": v["end_to_end_s"],
                                 "x vs one-step compact": v["end_to_end_s"] / base["end_to_end_s"],
                                 "UNet-only s": v["unet_only_s"],
                                 "UNet-only x vs one-step compact": v["unet_only_s"] / base["unet_only_s"]}
                                for name, v in latency.items()])
    markdown += "\n" + markdown_table([{"model": k, "params": v} for k, v in data["params"].items()])
    json_path, md_path = write_results("sr_quality", data, markdown, args.out)
    print(markdown)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
