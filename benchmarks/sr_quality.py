"""SR quality and latency: the one-step compact SR model (default: the shipped ``x4-compact``) against bicubic,
the VAE's ceiling, its light-VAE path, the SR diffusion model it came from (optional) and teacher-sized models.

1. Quality (standard protocol, :mod:`tocsr_nas.sr.evaluate`): PSNR/SSIM on Y, ``scale`` px shaved, bicubic LR,
   whole images, per image and mean, for ``bicubic``, ``vae-recon`` (the VAE's ceiling for direct decoding), the
   one-step model in every ``--output-modes`` mode, its light-VAE path (when the model has one: the light
   decoder's PSNR cost), the K-step SR diffusion model (``--diffusion``, ``--steps``: residual-shifting sampling
   steps, at most its schedule's) and a trained teacher-sized one-step model (``--onestep-teacher``).
   ``--diffusion-only`` keeps bicubic and the diffusion model (a quicker run for the multi-step model).
2. Latency in one run, same threads, at every ``--latency-size`` LR side, in ``--tile`` output-pixel tiles (a size
   whose output fits in one tile runs untiled): the one-step compact model (its own output mode, ``direct``, and
   the light VAE), the SR diffusion model at ``--latency-steps`` steps (with ``--diffusion``), and teacher-sized
   one-step and ``--latency-steps`` models (the teacher UNet adapted the same way; latency does not depend on
   weights, so they are built untrained unless ``--onestep-teacher`` gives a trained one). Speed-ups are against
   the teacher-sized ``--latency-steps`` model, measured in the same run. ``--measured-steps K`` (for large
   outputs, where 50 steps take hours on a CPU) times the multi-step models at 1 and K steps instead and
   *extrapolates* them to ``--latency-steps``: per step = (t(K) - t(1)) / (K - 1), fixed part (bicubic,
   encode, decodes) = t(1) - per step, t(N) = fixed + N x per step; such rows are labelled extrapolated.
3. Cost: params and fvcore GMACs per call of each network at ``--cost-size`` (default: the first latency size).
   With a trained ``--onestep-teacher`` (the same recipe on the teacher's UNet) and ``--data``, the claim table
   puts the compact model's PSNR/SSIM difference per set next to its params and GMACs ratios, with bicubic.

Usage::

    python benchmarks/sr_quality.py --onestep x4-compact --data ../shared/data/sr/CSet5 \\
        --data ../shared/data/sr/CSet14 [--diffusion runs/sr_adapt/model --steps 20] [--latency-steps 50]
    python benchmarks/sr_quality.py --onestep runs/x4/onestep/model --onestep-teacher runs/x4_teacher/onestep/model \\
        --data ../shared/data/sr/CSet5 --data ../shared/data/sr/CSet14 --skip-latency --name sr_claim
    python benchmarks/sr_quality.py --skip-quality --latency-size 256 --measured-steps 2 --latency-warmup 0 --cost-size 64 \\
        --name sr_quality_latency_1024
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, refusing_bad_input, write_results  # noqa: E402

from tocsr_nas.data.images import list_image_files  # noqa: E402
from tocsr_nas.errors import ConfigError  # noqa: E402
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
from tocsr_nas.sr.pipeline import require_sampleable  # noqa: E402
from tocsr_nas.sr.shift import ShiftConfig, sample_indices  # noqa: E402
from tocsr_nas.sr.shipped import resolve_sr_model  # noqa: E402
from tocsr_nas.teachers import load_teacher  # noqa: E402


def teacher_sized(like: SRModel, teacher: str, kind: str | None = None, steps: int = 50) -> SRModel:
    """The teacher UNet adapted like ``like`` (same VAE, schedule and output mode; ``kind`` overrides its kind).

    A multi-step (``sr-diffusion``) one gets a ``steps``-step residual-shifting schedule, so that sampling it with
    ``steps`` steps makes ``steps`` UNet calls (a sampler never takes more steps than its schedule has).
    """
    spec = load_teacher(teacher)
    net = adapt_unet(spec.unet, spec.context(1)[0].detach()).eval()
    if kind is None or kind == like.kind:
        return dataclasses.replace(like, net=net)
    return dataclasses.replace(like, net=net, kind=kind, timestep=200 if kind == "sr-onestep" else None,
                               shift=ShiftConfig(steps=steps) if kind == "sr-diffusion" else None)


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def gmacs(model: SRModel, lr_size: int, *, codecs: bool = True) -> dict[str, float]:
    """fvcore GMACs of one UNet call and (``codecs``) the VAE's encoder and decoder (and the light ones)."""
    side = lr_size * model.scale
    latent = torch.zeros(1, model.net.latent_channels, side // model.vae_factor, side // model.vae_factor)
    image = torch.zeros(1, 3, side, side)
    out = {"unet": count_macs(model.net, (latent, latent, torch.tensor([1]))).macs / 1e9}
    if not codecs:
        return out
    out |= {"vae_encoder": count_macs(model.vae.encoder, (image,)).macs / 1e9,
           "vae_decoder": count_macs(model.vae.decoder, (latent,)).macs / 1e9}
    if model.light is not None:
        out["light_encoder"] = count_macs(model.light.encoder, (image,)).macs / 1e9
        out["light_decoder"] = count_macs(model.light.decoder, (latent,)).macs / 1e9
    return out


def pipeline_gmacs(parts: dict[str, float], output: str, light: bool = False) -> float:
    """GMACs of one one-step upscale: encode, one UNet call, and one decode (two in residual mode: the LR latent)."""
    prefix = "light" if light else "vae"
    decodes = 2 if output == "residual" else 1
    return parts[f"{prefix}_encoder"] + parts["unet"] + decodes * parts[f"{prefix}_decoder"]


def extrapolate(one: float, measured: float, k: int, steps: int) -> dict[str, float]:
    """``steps``-step seconds from times at 1 and ``k`` steps: fixed part + ``steps`` x per-step time."""
    per_step = (measured - one) / (k - 1)
    fixed = one - per_step
    return {"per_step_s": per_step, "fixed_s": fixed, "end_to_end_s": fixed + steps * per_step}


def claim_table(summary: list[dict], params_: dict[str, int], costs: dict[str, dict[str, float]],
                output: str) -> tuple[list[dict], dict]:
    """The compact vs teacher-sized one-step table (with bicubic) and its ratios and differences as JSON."""
    mean = {(r["dataset"], r["method"]): r for r in summary}
    datasets = list(dict.fromkeys(r["dataset"] for r in summary))
    methods = {"bicubic": "bicubic", "onestep-compact": f"onestep-compact/{output}",
               "onestep-teacher-sized": "onestep-teacher-sized"}
    parts = {"onestep-compact": costs["onestep-compact"],  # the same VAE (checked in load_models)
             "onestep-teacher-sized": {**costs["onestep-compact"], "unet": costs["teacher-sized"]["unet"]}}
    e2e = {name: pipeline_gmacs(value, output) for name, value in parts.items()}
    unet = {name: value["unet"] for name, value in parts.items()}
    rows = []
    for name, method in methods.items():
        row: dict = {"model": name, "params": f"{params_[name]:,}" if name in params_ else "",
                     "UNet GMACs/call": unet.get(name, ""), "end-to-end GMACs": e2e.get(name, "")}
        for dataset in datasets:
            row[f"{dataset} PSNR-Y"] = mean[dataset, method]["psnr_y"]
            row[f"{dataset} SSIM-Y"] = mean[dataset, method]["ssim_y"]
        rows.append(row)
    small, large = "onestep-compact", "onestep-teacher-sized"
    ratios = {"params": params_[small] / params_[large], "unet_gmacs": unet[small] / unet[large],
              "end_to_end_gmacs": e2e[small] / e2e[large]}
    differences = {dataset: {key: mean[dataset, methods[small]][key] - mean[dataset, large][key]
                             for key in ("psnr_y", "ssim_y")} for dataset in datasets}
    row = {"model": "compact / teacher-sized", "params": f"{ratios['params']:.3f} ({1 / ratios['params']:.2f}x fewer)",
           "UNet GMACs/call": f"{ratios['unet_gmacs']:.3f} ({1 / ratios['unet_gmacs']:.2f}x fewer)",
           "end-to-end GMACs": f"{ratios['end_to_end_gmacs']:.3f} ({1 / ratios['end_to_end_gmacs']:.2f}x fewer)"}
    for dataset in datasets:
        row[f"{dataset} PSNR-Y"] = f"{differences[dataset]['psnr_y']:+.2f} dB"
        row[f"{dataset} SSIM-Y"] = f"{differences[dataset]['ssim_y']:+.4f}"
    rows.append(row)
    return rows, {"rows": rows[:-1], "ratios_compact_over_teacher_sized": ratios,
                  "differences_compact_minus_teacher_sized": differences}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onestep", default="x4-compact", help="sr-onestep model folder or shipped name (compact)")
    parser.add_argument("--diffusion", type=Path, help="sr-diffusion model folder it was distilled from (optional)")
    parser.add_argument("--onestep-teacher", type=Path,
                        help="trained teacher-sized sr-onestep folder, same recipe (optional; adds the claim table)")
    parser.add_argument("--teacher", default="tiny-ldm", help="teacher for the untrained teacher-sized models")
    parser.add_argument("--data", type=Path, action="append", default=[], help="HR folder (repeatable)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--steps", type=int, nargs="+", default=[20], help="DDIM steps of the diffusion model for quality")
    parser.add_argument("--latency-steps", type=int, default=50, help="DDIM steps of the multi-step models for latency")
    parser.add_argument("--measured-steps", type=int, default=0,
                        help="time the multi-step models at 1 and this many steps and extrapolate to --latency-steps "
                             "(0: time all --latency-steps)")
    parser.add_argument("--latency-size", type=int, nargs="+", default=[64],
                        help="LR side(s) of the latency image (64: 256 px out; 256: 1024 px out)")
    parser.add_argument("--cost-size", type=int,
                        help="LR side of the GMACs table (default: the first --latency-size; 64: 256 px out)")
    parser.add_argument("--tile", type=int, default=512,
                        help="output-pixel tile of the latency runs (an output that fits in one tile runs untiled)")
    parser.add_argument("--latency-repeats", type=int, default=3)
    parser.add_argument("--latency-warmup", type=int, default=1,
                        help="untimed calls before the timed ones (0 for long tiled calls: the first tile warms up)")
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
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Refuse option values that cannot work, before anything is loaded or written."""
    if args.diffusion_only and args.diffusion is None:
        raise ConfigError("--diffusion-only needs --diffusion", key="--diffusion-only")
    if args.diffusion_only and args.onestep_teacher is not None:
        raise ConfigError("the claim table needs the one-step rows: drop --diffusion-only", key="--onestep-teacher")
    for key, values, least in (("--latency-size", args.latency_size, 1), ("--tile", [args.tile], 1),
                               ("--cost-size", [1 if args.cost_size is None else args.cost_size], 1),
                               ("--latency-steps", [args.latency_steps], 2),
                               ("--latency-repeats", [args.latency_repeats], 1), ("--threads", [args.threads], 1),
                               ("--latency-warmup", [args.latency_warmup], 0)):
        if min(values) < least:
            raise ConfigError(f"must be >= {least}, got {min(values)}", key=key)
    if args.measured_steps and not 2 <= args.measured_steps < args.latency_steps:
        raise ConfigError(f"must be 0 or in [2, --latency-steps={args.latency_steps}), got {args.measured_steps}",
                          key="--measured-steps")


def load_models(args: argparse.Namespace) -> tuple[Path, SRModel, SRModel | None, SRModel | None]:
    """``(onestep folder, onestep, diffusion, trained teacher-sized onestep)``; a reference must be comparable."""
    onestep_dir = resolve_sr_model(args.onestep)
    onestep = load_sr_model(onestep_dir, kind="sr-onestep")
    diffusion = load_sr_model(args.diffusion, kind="sr-diffusion") if args.diffusion else None
    if diffusion is not None:
        require_sampleable(diffusion, source=args.diffusion)
    reference = load_sr_model(args.onestep_teacher, kind="sr-onestep") if args.onestep_teacher else None
    if reference is not None:
        for field in ("scale", "output", "timestep", "vae_factor"):
            if getattr(reference, field) != getattr(onestep, field):
                raise ConfigError(f"{field} {getattr(reference, field)} differs from the compact model's "
                                  f"{getattr(onestep, field)}: not the same recipe", source=args.onestep_teacher,
                                  key=field)
        mine, theirs = onestep.vae.state_dict(), reference.vae.state_dict()
        if mine.keys() != theirs.keys() or any(not torch.equal(mine[k], theirs[k]) for k in mine):
            raise ConfigError("its VAE differs from the compact model's: not the same recipe",
                              source=args.onestep_teacher, key="vae")
    return onestep_dir, onestep, diffusion, reference


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return refusing_bad_input(run, args)


def run(args: argparse.Namespace) -> int:
    check_args(args)
    torch.set_num_threads(args.threads)
    files = {folder: list_image_files(folder) for folder in ([] if args.skip_quality else args.data)}
    onestep_dir, onestep, diffusion, reference = load_models(args)
    big = reference or teacher_sized(onestep, args.teacher)
    data: dict = {"scale": args.scale, "steps": args.steps, "latency_steps": args.latency_steps,
                  "threads": args.threads,
                  "models": {"onestep": str(onestep_dir), "diffusion": str(args.diffusion),
                             "onestep_teacher": str(args.onestep_teacher or f"untrained {args.teacher}")},
                  "params": {"onestep-compact": params(onestep.net), "onestep-teacher-sized": params(big.net),
                             "vae": params(onestep.vae)}}
    if onestep.light is not None:
        data["params"]["light_vae"] = params(onestep.light)
    markdown = "Command: `python " + " ".join(sys.argv) + f"` ({args.threads} thread(s))\n\n"
    summary: list[dict] = []
    if files:
        methods = reference_methods(args.scale, None if args.diffusion_only else onestep.vae)
        modes = [*args.output_modes, *([onestep.output] if reference is not None else [])]  # the claim's row
        for mode in [] if args.diffusion_only else dict.fromkeys(modes):
            methods[f"onestep-compact/{mode}"] = model_method(onestep, output=mode)
        if onestep.light is not None and not args.diffusion_only:
            methods["onestep-compact/light"] = model_method(onestep, light=True)
        if reference is not None:
            methods["onestep-teacher-sized"] = model_method(reference)
        for steps in args.steps if diffusion is not None else []:
            for mode in args.output_modes:
                methods[f"diffusion-{steps}step/{mode}"] = model_method(diffusion, steps=steps, output=mode)
        rows = []
        for folder, folder_files in files.items():
            rows += evaluate_files(methods, folder_files, args.scale, dataset=folder.name)
        summary = summarize(rows)
        args.out.mkdir(parents=True, exist_ok=True)
        write_csv(args.out / f"{args.name}_per_image.csv", rows)
        data["summary"], data["per_image"] = summary, rows
        markdown += f"## Quality, x{args.scale}, bicubic LR (PSNR/SSIM on Y, {args.scale} px shaved, whole images)\n\n"
        markdown += markdown_table(summary)

    if not args.skip_latency:
        data["latency"], data["latency_tiles"], text = latency(args, onestep, diffusion, big)
        markdown += text

    size = args.cost_size or args.latency_size[0]
    costs = {"onestep-compact": gmacs(onestep, size), "teacher-sized": gmacs(big, size, codecs=False)}
    data["gmacs"], data["gmacs_output_px"] = costs, size * args.scale
    markdown += f"\n## Cost per call at {size * args.scale} px output (fvcore GMACs)\n\n"
    markdown += markdown_table([{"network": f"{name} {part}", "GMACs": value}
                                for name, parts in costs.items() for part, value in parts.items()])
    markdown += "\n" + markdown_table([{"model": name, "params": value} for name, value in data["params"].items()])
    if reference is not None and summary:
        rows, data["claim"] = claim_table(summary, data["params"], costs, onestep.output)
        markdown += (f"\n## Claim: compact vs teacher-sized one-step, same recipe (x{args.scale}, whole images, "
                     f"PSNR/SSIM on Y, {args.scale} px shaved; GMACs per call at {size * args.scale} px output, "
                     f"end to end = encode + UNet + decode(s), {onestep.output} output)\n\n")
        markdown += markdown_table(rows)
    json_path, md_path = write_results(args.name, data, markdown, args.out)
    print(markdown)
    print(f"wrote {json_path} and {md_path}")
    return 0


def latency(args: argparse.Namespace, onestep: SRModel, diffusion: SRModel | None,
            big: SRModel) -> tuple[dict, dict, str]:
    """Latency of every model at every ``--latency-size``, side by side in this run: JSON and Markdown."""
    k, measured = args.latency_steps, args.measured_steps
    teacher_row = f"diffusion-teacher-sized-{k}step"
    runs: dict[str, tuple[SRModel, int, bool]] = {
        "onestep-compact": (onestep, 1, False),
        "onestep-compact/direct": (dataclasses.replace(onestep, output="direct"), 1, False)}
    if onestep.light is not None:
        runs["onestep-compact/light"] = (onestep, 1, True)
    if diffusion is not None:  # named by the steps it takes: at most its schedule's
        runs[f"diffusion-compact-{len(sample_indices(diffusion.shift, k))}step"] = (diffusion, k, False)
    runs["onestep-teacher-sized"] = (big, 1, False)
    runs[teacher_row] = (teacher_sized(diffusion or onestep, args.teacher, kind="sr-diffusion", steps=k), k, False)
    results: dict = {}
    tiles: dict[str, int | None] = {}
    markdown = ""
    for lr_size in args.latency_size:
        out_px = lr_size * args.scale
        tile = args.tile if out_px > args.tile else None
        timings = {}
        for name, (model, steps, light) in runs.items():
            time_ = functools.partial(measure_latency, model, lr_size, repeats=args.latency_repeats, light=light,
                                      tile=tile, warmup=args.latency_warmup)
            unet_time = functools.partial(measure_latent_latency, model, lr_size, repeats=args.latency_repeats,
                                          warmup=args.latency_warmup)
            if steps > 1 and measured:
                entry = extrapolate(time_(steps=1), time_(steps=measured), measured, steps)
                entry["unet_only_s"] = steps / measured * unet_time(steps=measured)
                entry["measured_steps"], entry["extrapolated"] = [1, measured], True
            else:
                entry = {"end_to_end_s": time_(steps=steps),
                         "unet_only_s": unet_time(steps=steps)}
            timings[name] = entry
        results[str(lr_size)] = timings
        tiles[str(lr_size)] = tile
        ref = timings[teacher_row]
        tiling = f", {args.tile}-px tiles (64-px overlap)" if tile else ", untiled"
        markdown += (f"\n## Latency per image ({lr_size}x{lr_size} -> {out_px}x{out_px}{tiling}, {args.threads} "
                     f"thread(s), median of {args.latency_repeats} after {args.latency_warmup} warm-up call(s))\n\n")
        markdown += ("end to end = bicubic + encode + UNet call(s) + decode(s) (residual mode decodes the LR latent "
                     "too; `light`: the light VAE); UNet only = the latent-space part (untiled). Speed-up = "
                     f"{teacher_row} time / this time, same run.\n\n")
        if measured:
            markdown += (f"Rows marked *extrapolated* were timed at 1 and {measured} steps, not {k}: per step = "
                         f"(t({measured}) - t(1)) / {measured - 1}, fixed = t(1) - per step, t({k}) = fixed + "
                         f"{k} x per step (UNet only: t({measured}) x {k} / {measured}). They are estimates, not "
                         "measurements; so are the speed-ups against them.\n\n")
        markdown += markdown_table([
            {"model": name, "timing": "extrapolated" if v.get("extrapolated") else "measured",
             "end-to-end s": v["end_to_end_s"], f"speed-up vs {teacher_row}": ref["end_to_end_s"] / v["end_to_end_s"],
             "UNet-only s": v["unet_only_s"], "UNet-only speed-up": ref["unet_only_s"] / v["unet_only_s"],
             "measured parts": (f"t(1)={v['fixed_s'] + v['per_step_s']:.1f} s, per step {v['per_step_s']:.2f} s, "
                                f"fixed {v['fixed_s']:.1f} s") if v.get("extrapolated") else ""}
            for name, v in timings.items()])
    return results, tiles, markdown


if __name__ == "__main__":
    sys.exit(main())
