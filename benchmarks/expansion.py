"""Latent expansion on the embedded scale: 4-channel teacher vs expanded 16-channel vs 16-channel from scratch.

Usage::

    python benchmarks/expansion.py --eval-dir /path/CSet5 --eval-dir /path/CSet14 --held-out-dir /path/CSet14 \
        [--vae-steps 150 --unet-steps 150] [--run runs/expansion] [--out benchmarks/results]

(a) a 4-channel VAE (``train_vae.yaml`` with ``latent_channels: 4``) and a 4-channel tiny-ldm-shaped teacher on its
latents; (b) ``expand`` of (a) (the shipped ``expand_sd15.yaml`` recipe's losses, these step counts); (c) a
16-channel VAE and tiny-ldm teacher from scratch with as many steps as (a) and (b) together. Reports whole-image
VAE reconstruction PSNR (RGB and Y) on every ``--eval-dir`` and the held-out denoising loss on crops of
``--held-out-dir`` (images no stage trains on). Training crops: scikit-image's photographs (``builtin``). CPU
budgets are tiny; the figures say how far each model got in them, not what the method reaches. Rerunning with the
same ``--run`` resumes every stage.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, write_results  # noqa: E402
from tocsr_nas.data.images import list_image_files  # noqa: E402
from tocsr_nas.teachers import CONFIG_DIR, load_teacher  # noqa: E402
from tocsr_nas.teachers.weights import load_scheduler  # noqa: E402
from tocsr_nas.training.evaluate import denoising_loss  # noqa: E402
from tocsr_nas.training.expand_recipe import (  # noqa: E402
    ExpandRecipe,
    reconstruction_psnr,
    run_expand_recipe,
)
from tocsr_nas.training.teacher_recipe import (  # noqa: E402
    TeacherRecipe,
    held_out_latents,
    run_teacher_recipe,
)
from tocsr_nas.training.vae_recipe import VaeRecipe, run_vae_recipe  # noqa: E402

RECIPES = Path(__file__).resolve().parents[1] / "experiments" / "recipes"


def vae_recipe(channels: int, steps: int) -> VaeRecipe:
    data = yaml.safe_load((RECIPES / "train_vae.yaml").read_text())
    data["vae"]["latent_channels"] = channels
    data["loop"].update(steps=steps, checkpoint_every=50, log_every=25, warmup_steps=min(50, steps // 4))
    return VaeRecipe(**data)


def teacher_config(run: Path, channels: int) -> Path:
    """tiny-ldm's UNet shape on a ``channels``-channel latent (random init, no weights)."""
    data = yaml.safe_load((CONFIG_DIR / "tiny-ldm.yaml").read_text())
    data.pop("weights")
    data["unet"].update(in_channels=channels, out_channels=channels)
    path = run / f"tiny-ldm-{channels}ch.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def teacher_recipe(config: Path, vae: Path, steps: int) -> TeacherRecipe:
    data = yaml.safe_load((RECIPES / "train_teacher.yaml").read_text())
    data.update(teacher=str(config), vae=str(vae))
    data["loop"].update(steps=steps, checkpoint_every=50, log_every=25, warmup_steps=min(50, steps // 4))
    return TeacherRecipe(**data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, action="append", required=True)
    parser.add_argument("--held-out-dir", type=Path, required=True)
    parser.add_argument("--vae-steps", type=int, default=150)
    parser.add_argument("--unet-steps", type=int, default=150)
    parser.add_argument("--held-out-crops", type=int, default=16)
    parser.add_argument("--run", type=Path, default=Path("runs/expansion"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    run, v, u = args.run, args.vae_steps, args.unet_steps
    run.mkdir(parents=True, exist_ok=True)
    eval_files = {d.name: list_image_files(d) for d in args.eval_dir}
    list_image_files(args.held_out_dir)

    run_vae_recipe(vae_recipe(4, v), run / "a_vae4")
    run_teacher_recipe(teacher_recipe(teacher_config(run, 4), run / "a_vae4" / "vae", u), run / "a_teacher4")
    source = yaml.safe_load((run / "tiny-ldm-4ch.yaml").read_text())
    source["weights"] = str((run / "a_teacher4" / "weights").resolve())
    (run / "teacher4.yaml").write_text(yaml.safe_dump(source, sort_keys=False))
    expand = yaml.safe_load((RECIPES / "expand_sd15.yaml").read_text())
    for key, steps in (("vae_loop", v), ("unet_loop", u)):
        loop = (yaml.safe_load((RECIPES / ("train_vae.yaml" if key == "vae_loop" else
                                                         "train_teacher.yaml")).read_text())["loop"])
        loop.update(steps=steps, checkpoint_every=50, log_every=25, warmup_steps=min(50, steps // 4))
        expand[key] = loop
    expand.update(teacher=str(run / "teacher4.yaml"), data={"source": "builtin", "crop_size": 64, "flips": True},
                  unet_data={"source": "builtin", "crop_size": 128, "flips": True})  # as the VAE and teacher recipes
    run_expand_recipe(ExpandRecipe(**expand), run / "b_expanded")
    run_vae_recipe(vae_recipe(16, 2 * v), run / "c_vae16")
    run_teacher_recipe(teacher_recipe(teacher_config(run, 16), run / "c_vae16" / "vae", 2 * u), run / "c_teacher16")

    scratch = yaml.safe_load((run / "tiny-ldm-16ch.yaml").read_text())
    scratch["weights"] = str((run / "c_teacher16" / "weights").resolve())
    (run / "teacher16.yaml").write_text(yaml.safe_dump(scratch, sort_keys=False))
    models = {"a_4ch": (run / "teacher4.yaml", run / "a_teacher4" / "weights"),
              "b_expanded_16ch": (run / "b_expanded", run / "b_expanded" / "weights"),
              "c_scratch_16ch": (run / "teacher16.yaml", run / "c_teacher16" / "weights")}
    steps = {"a_4ch": {"vae": v, "unet": u}, "b_expanded_16ch": {"vae": 2 * v, "unet": 2 * u},
             "c_scratch_16ch": {"vae": 2 * v, "unet": 2 * u}}
    rows = {}
    for name, (spec, weights) in models.items():
        teacher, scheduler = load_teacher(spec), load_scheduler(weights)
        latents = held_out_latents(teacher.vae, str(args.held_out_dir), 128, args.held_out_crops)
        with torch.no_grad():
            loss = denoising_loss(teacher, latents, scheduler)
        rows[name] = {"latent_channels": teacher.latent_channels, "steps": steps[name], "held_out_loss": loss,
                      "psnr": {set_name: reconstruction_psnr(teacher.vae, files) for set_name, files in eval_files.items()}}
    data = {"vae_steps": v, "unet_steps": u, "held_out_dir": str(args.held_out_dir), "models": rows}
    sets = list(eval_files)
    header = "| model | latent ch | VAE steps | UNet steps | " + " | ".join(f"{s} RGB | {s} Y" for s in sets) + \
             " | held-out loss |"
    lines = [f"Tiny CPU budgets ({v} VAE / {u} UNet steps per stage; (b) and (c) have twice that in total): the "
             "figures show how far each model got, not what the method reaches. PSNR in dB on whole images "
             f"(posterior mean); held-out denoising loss on {args.held_out_crops} crops of {args.held_out_dir.name} "
             "(epsilon MSE, seeded noise; 1 = predicting zero).\n", header,
             "|---|---:|---:|---:|" + "---:|" * (2 * len(sets)) + "---:|"]
    for name, r in rows.items():
        cells = " | ".join(f"{r['psnr'][s]['rgb']:.2f} | {r['psnr'][s]['y']:.2f}" for s in sets)
        lines.append(f"| {name} | {r['latent_channels']} | {r['steps']['vae']} | {r['steps']['unet']} | {cells} | "
                     f"{r['held_out_loss']:.4f} |")
    lines.append(f"\nReproduce: `python benchmarks/expansion.py --vae-steps {v} --unet-steps {u} "
                 + " ".join(f"--eval-dir {d}" for d in args.eval_dir) + f" --held-out-dir {args.held_out_dir}`.\n")
    paths = write_results("expansion", data, "\n".join(lines), args.out)
    print("\n".join(lines[1:]))
    print("wrote", *paths)


if __name__ == "__main__":
    main()
