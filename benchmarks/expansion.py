"""Latent expansion: a 4-channel teacher, its 16-channel expansion, and 16- and 4-channel ones trained as long.

Usage::

    python benchmarks/expansion.py --hr-dir /data/sr/CSun_Hays80 --eval-dir /data/sr/CSet5 \
        --eval-dir /data/sr/CSet14 --held-out-dir /data/sr/CBSD68 [--config experiments/expansion.yaml] \
        [--set expansion.KEY=VALUE ...] [--run runs/expansion-benchmark] [--out benchmarks/results] [--name expansion]

Runs the ``expansion:`` section of ``--config`` (:mod:`tocsr_nas.training.expansion_study`, the same code as
``tocsr-nas run experiments/expansion.yaml``) with these folders, and rewrites ``<name>.{json,md}`` after every
finished sub-run, so a crash loses nothing; rerunning with the same ``--run`` resumes. The Markdown records the
machine, date, load average and the exact command.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, machine, write_results  # noqa: E402
from tocsr_nas.experiments import resolve  # noqa: E402
from tocsr_nas.training.expansion_study import markdown, run_study  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "expansion.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hr-dir", type=Path, required=True, help="training images (VAEs and UNets)")
    parser.add_argument("--eval-dir", type=Path, action="append", required=True, help="whole-image PSNR folder")
    parser.add_argument("--held-out-dir", type=Path, required=True, help="held-out denoising loss crops")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, as for `tocsr-nas run` (e.g. expansion.expand_lr=2.0e-3)")
    parser.add_argument("--run", type=Path, default=Path("runs/expansion-benchmark"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="expansion", help="results file stem (e.g. for a longer-budget study)")
    args = parser.parse_args()
    eval_dirs = ", ".join(str(d) for d in args.eval_dir)
    [(_, config)] = resolve(args.config, [f"expansion.data.source={args.hr_dir}",
                                          f"expansion.unet_data.source={args.hr_dir}",
                                          f"expansion.eval=[{eval_dirs}]", f"expansion.held_out={args.held_out_dir}",
                                          *args.set])
    command = "python " + shlex.join(["benchmarks/expansion.py", *sys.argv[1:]])
    info = machine()

    def write(results: dict[str, Any]) -> None:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
        study = config.expansion
        text = (f"Load average (1/5/15 min) when written: {info['load_average']}. Command: `{command}`\n\n"
                f"Budgets: {study.vae_loop.steps} VAE + {study.unet_loop.steps} UNet steps per stage (batch "
                f"{study.vae_loop.batch_size}/{study.unet_loop.batch_size}, crops {study.data.crop_size}/"
                f"{study.unet_data.crop_size} px of {args.hr_dir.name}; VAE peak lr {study.vae_loop.lr:g}, (b)'s VAE "
                f"fine-tuning {study.expand_lr or study.vae_loop.lr:g}); (b), (c) and (d) have twice that since "
                f"random init. PSNR in dB on whole images (posterior mean, 8-bit); held-out loss: epsilon MSE on "
                f"{study.held_out_crops} seeded crops of {args.held_out_dir.name} on each model's own latents; "
                "linear denoiser: the loss of the best per-channel affine noise predictor on the same latents (how hard "
                "each latent space is to denoise; low-variance channels are easy).\n\n"
                + markdown(results))
        write_results(args.name, {"machine": info, "command": command, **results}, text, args.out)

    run_study(config.expansion, args.run, on_update=write)
    print((args.out / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
