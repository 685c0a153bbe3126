"""Real-world inputs: a Real-ESRGAN-trained one-step model next to the bicubic-trained one on fixed degraded sets.

Each ``--degraded`` folder is evaluated on LR inputs made by ``--degradation`` (default: the committed Real-ESRGAN
config ``experiments/recipes/degradation_realesrgan.yaml``), image by image seeded by ``--degradation-seed`` and the
file name (:func:`tocsr_nas.sr.evaluate.lr_generator`), so the degraded sets are fixed; the sha256 of every LR input
is recorded. Each ``--clean`` folder is evaluated on plain bicubic LR inputs (the variant's cost on clean inputs).
Rows: ``bicubic`` (the LR upsampled), the ``--baseline`` model (default: the shipped, bicubic-trained
``x4-compact``) and the ``--model`` variant. Measures: PSNR/SSIM on Y (``scale`` px shaved, whole images) and a
perceptual-free detail ratio: the output's mean absolute Y gradient over the HR image's. PSNR cannot tell a blurred
output from one that kept the input's noise; the ratio can (below 1: smoother than the ground truth, above 1:
noise or artefacts added). It is no quality score on its own (random noise of the right energy scores 1).

Usage::

    python benchmarks/sr_realworld.py --model runs/x4_realesrgan/onestep/model \\
        --degraded ../shared/data/sr/CSet14 --degraded ../shared/data/sr/CBSD68 --clean ../shared/data/sr/CSet14
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, refusing_bad_input, write_results  # noqa: E402

from tocsr_nas.data.images import list_image_files  # noqa: E402
from tocsr_nas.sr.evaluate import (  # noqa: E402
    eval_degradation,
    evaluate_files,
    markdown_table,
    model_method,
    reference_methods,
    summarize,
    write_csv,
)
from tocsr_nas.sr.metrics import rgb_to_y  # noqa: E402
from tocsr_nas.sr.model import load_sr_model  # noqa: E402
from tocsr_nas.sr.shipped import resolve_sr_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TRAINING = ("Training (exact commands and times in the recipe files and in x4-compact's MODEL_CARD.md): "
            "`tocsr-nas train-sr adapt --config experiments/recipes/sr_x4_realesrgan_adapt.yaml --hr-dir "
            "../shared/data/sr/CSun_Hays80 --out runs/x4_realesrgan/adapt`, then `tocsr-nas train-sr onestep --config "
            "experiments/recipes/sr_x4_realesrgan_onestep.yaml --init runs/x4_realesrgan/adapt/model --hr-dir "
            "../shared/data/sr/CSun_Hays80 --out runs/x4_realesrgan/onestep --export-at 450`. x4-compact: "
            "`sr_x4_diffusion.yaml` and `sr_x4_compact_distill.yaml` (4000 steps of 8 crops of 64 px each), then "
            "`sr_x4_compact_finetune.yaml` (2000 steps of 4 crops of 128 px): 72,000 training crops against the "
            "variant's 1,960, so the two differ in budget as well as in degradation.\n\n")
DEFAULT_DEGRADATION = REPO / "experiments" / "recipes" / "degradation_realesrgan.yaml"


def mean_gradient(image: torch.Tensor, shave: int = 0) -> float:
    """Mean absolute forward difference (x and y) of an RGB image's Y plane, in 8-bit levels."""
    plane = rgb_to_y(image.clamp(0, 1))
    if shave:
        plane = plane[shave:-shave, shave:-shave]
    return 0.5 * float(plane.diff(dim=0).abs().mean() + plane.diff(dim=1).abs().mean())


def gradient_ratio(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0) -> float:
    """Detail ratio: the output's mean gradient over the HR image's (1: as much detail; < 1 smoother; > 1 noisier)."""
    return mean_gradient(sr, shave) / mean_gradient(hr, shave)


def model_info(path: Path) -> dict:
    """What a model folder says about its training (recipe degradation and steps)."""
    info = load_sr_model(path).info or {}
    recipe = info.get("recipe") or {}
    return {"folder": str(path), "steps": info.get("steps"), "degradation": recipe.get("degradation")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="the Real-ESRGAN-trained sr-onestep model folder")
    parser.add_argument("--model-name", default="x4-realesrgan", help="its row name (default x4-realesrgan)")
    parser.add_argument("--baseline", default="x4-compact", help="bicubic-trained model folder or shipped name")
    parser.add_argument("--baseline-name", default="x4-compact", help="its row name (default x4-compact)")
    parser.add_argument("--degraded", type=Path, action="append", default=[], help="HR folder, degraded inputs")
    parser.add_argument("--clean", type=Path, action="append", default=[], help="HR folder, bicubic inputs")
    parser.add_argument("--degradation", type=Path, default=DEFAULT_DEGRADATION, help="degradation config file")
    parser.add_argument("--degradation-seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="sr_realworld")
    args = parser.parse_args(argv)
    return refusing_bad_input(run, args)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    degradation, config = eval_degradation(args.degradation, args.scale)
    sets = [("degraded", folder, list_image_files(folder)) for folder in args.degraded]
    sets += [("bicubic", folder, list_image_files(folder)) for folder in args.clean]  # listed before any work
    resolved = args.degradation.resolve()
    rel = resolved.relative_to(REPO) if resolved.is_relative_to(REPO) else args.degradation
    bicubic = eval_degradation("bicubic", args.scale)[0]
    baseline_dir = resolve_sr_model(args.baseline)
    baseline_name = args.baseline_name
    methods = reference_methods(args.scale, None)
    methods[baseline_name] = model_method(load_sr_model(baseline_dir, kind="sr-onestep"))
    methods[args.model_name] = model_method(load_sr_model(args.model, kind="sr-onestep"))
    data: dict = {
        "scale": args.scale, "threads": args.threads,
        "degradation": {"file": str(rel), "seed": args.degradation_seed,
                        "file_sha256": hashlib.sha256(args.degradation.read_bytes()).hexdigest(), "config": config},
        "models": {baseline_name: model_info(baseline_dir), args.model_name: model_info(args.model)},
        "lr_sha256": {}}
    rows = []
    for kind, folder, files in sets:
        dataset = f"{folder.name} {'Real-ESRGAN' if kind == 'degraded' else 'bicubic'} LR"
        hashes = data["lr_sha256"].setdefault(dataset, {})

        def record(path, lr, hr, outputs, hashes=hashes) -> None:
            hashes[path.name] = hashlib.sha256((lr * 255).round().to(torch.uint8).numpy().tobytes()).hexdigest()

        rows += evaluate_files(methods, files, args.scale, dataset=dataset,
                               extra_metrics={"detail_ratio": lambda sr, hr: gradient_ratio(sr, hr, args.scale)},
                               on_outputs=record, degradation=degradation if kind == "degraded" else bicubic,
                               degradation_seed=args.degradation_seed)
    summary = summarize(rows)
    data["summary"], data["per_image"] = summary, rows
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / f"{args.name}_per_image.csv", rows)

    markdown = (f"Command: `python {' '.join(sys.argv)}` ({args.threads} torch thread(s)).\n\n"
                f"Degraded inputs: `{rel}` (sha256 {data['degradation']['file_sha256'][:16]}…), seed "
                f"{args.degradation_seed}; each image's LR seeded by the seed and its file name, LR sha256 per image in "
                f"the JSON (`lr_sha256`). Bicubic inputs: MATLAB bicubic x{args.scale}, 8-bit.\n\n"
                "Models: " + "; ".join(f"`{name}`: {m['folder']} (trained {m['steps']} steps, degradation "
                                        f"{m['degradation']})" for name, m in data["models"].items()) + ".\n\n"
                + TRAINING)
    markdown += (f"## PSNR/SSIM on Y ({args.scale} px shaved, whole images) and detail ratio (mean |gradient| of Y, "
                 "output / HR; 1 = as much detail as the ground truth)\n\n")
    markdown += markdown_table(summary)
    mean = {(r["dataset"], r["method"]): r for r in summary}
    markdown += f"\n## {args.model_name} minus {baseline_name} (and minus bicubic)\n\n" + markdown_table([
        {"dataset": dataset,
         f"psnr_y vs {baseline_name}": mean[dataset, args.model_name]["psnr_y"] - mean[dataset, baseline_name]["psnr_y"],
         f"ssim_y vs {baseline_name}": mean[dataset, args.model_name]["ssim_y"] - mean[dataset, baseline_name]["ssim_y"],
         "psnr_y vs bicubic": mean[dataset, args.model_name]["psnr_y"] - mean[dataset, "bicubic"]["psnr_y"],
         f"{baseline_name} psnr_y vs bicubic": mean[dataset, baseline_name]["psnr_y"] - mean[dataset, "bicubic"]["psnr_y"]}
        for dataset in data["lr_sha256"]])
    json_path, md_path = write_results(args.name, data, markdown, args.out)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
