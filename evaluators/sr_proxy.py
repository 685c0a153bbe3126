"""The ``sr-proxy`` evaluator: a short, budgeted SR adaptation of the arch's compact UNet, scored on held-out crops.

The arch is extracted from the supernet (with its distilled surrogates) and adapted to x4 SR by the shared
``sr-adapt`` recipe (:func:`tocsr_nas.sr.train.run_sr_adapt`: LR latent as zero-initialised input channels,
residual-shifting fine-tuning, :mod:`tocsr_nas.sr.shift`) for ``steps`` steps; the SR diffusion model is
then scored by PSNR-Y (``diffusion_steps`` sampling steps from the LR latent) on center crops of images that
the adaptation never sees. Training and held-out images are a fixed split of scikit-image's built-in photographs
(``HELD_OUT`` are held out; no evaluation set such as CSet5/CSet14/BSD68 is used, so nothing is tuned on them).

Expensive (a training run per arch): meant for validating a cheaper proxy or as the high fidelity of a
multi-fidelity search. Metrics: ``psnr_y`` (dB) and ``loss`` = ``-psnr_y`` (lower is better, as objectives are).
Each arch's model and score are kept in ``cache_dir/sr_proxy/<fingerprint>/<arch_id>/``, so a repeated arch is
read back, not retrained.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from tocsr_nas.arch import Arch
from tocsr_nas.atomic import write_json
from tocsr_nas.config_io import validate
from tocsr_nas.data.images import builtin_image_files
from tocsr_nas.errors import ConfigError
from tocsr_nas.profiling.cost_table import space_fingerprint
from tocsr_nas.sr.evaluate import evaluate_files, model_method
from tocsr_nas.sr.model import load_sr_model
from tocsr_nas.sr.train import SRAdaptRecipe, run_sr_adapt
from tocsr_nas.supernet import Supernet

from .base import Evaluator, register_evaluator
from .context import EvaluationContext
from .generation import check_options

HELD_OUT = ("chelsea.png", "coffee.png")
OPTIONS = {"steps": 40, "batch_size": 4, "crop": 64, "eval_crop": 128, "diffusion_steps": 4, "seed": 0,
           "threads": 1}
SCORE_FILE = "sr_proxy.json"


def split_builtin(folder: Path) -> tuple[Path, list[Path]]:
    """A folder linking the training split of the built-in photographs, and the held-out files."""
    files = builtin_image_files()
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        link = folder / path.name
        if path.name not in HELD_OUT and not link.exists():
            link.symlink_to(path)
    return folder, [p for p in files if p.name in HELD_OUT]


class SRProxyEvaluator(Evaluator):
    """PSNR-Y of a briefly SR-adapted compact UNet on held-out crops (see the module doc)."""

    name = "sr-proxy"

    def __init__(self, supernet: Supernet, teacher: str, folder: str | Path, *, vae: str | None = None,
                 surrogates_id: str = "untrained", **options: int) -> None:
        self.supernet, self.teacher, self.vae = supernet, teacher, vae
        self.options = {**OPTIONS, **options}
        self.surrogates_id = surrogates_id
        self.folder = Path(folder) / self.fingerprint.split(":")[1]

    def _recipe(self, compact: Path, images: Path) -> SRAdaptRecipe:
        o = self.options
        return validate(SRAdaptRecipe, {
            "backbone": {"teacher": self.teacher, "compact": str(compact)}, "vae": self.vae, "scale": 4,
            "data": {"source": str(images), "crop_size": o["crop"]},
            "loop": {"steps": o["steps"], "batch_size": o["batch_size"], "lr": 5e-4, "warmup_steps": min(10, o["steps"]),
                     "checkpoint_every": o["steps"], "log_every": max(1, o["steps"] // 4), "seed": o["seed"],
                     "num_threads": o["threads"], "ema_decay": None}}, source="sr-proxy")

    def evaluate(self, arch: Arch, budget: int | None = None) -> dict[str, float]:
        if budget is not None:
            raise ConfigError("sr-proxy has a fixed training budget (its steps option)", key="budget", allowed="None")
        out = self.folder / arch.arch_id
        score = out / SCORE_FILE
        if score.is_file():
            return json.loads(score.read_text())["metrics"]
        compact = out / "compact"
        with torch.no_grad():
            self.supernet.extract(arch).save_pretrained(compact)
        images, held_out = split_builtin(self.folder / "train_images")
        summary = run_sr_adapt(self._recipe(compact, images), out / "sr_adapt")
        model = load_sr_model(summary["model"], kind="sr-diffusion")
        rows = evaluate_files({"sr": model_method(model, steps=self.options["diffusion_steps"],
                                                  seed=self.options["seed"])},
                              held_out, model.scale, max_side=self.options["eval_crop"])
        psnr = sum(r["psnr_y"] for r in rows) / len(rows)
        metrics = {"psnr_y": float(psnr), "loss": -float(psnr)}
        write_json(score, {"arch": str(arch), "metrics": metrics, "images": [r["image"] for r in rows]})
        return metrics

    @property
    def fingerprint(self) -> str:
        options = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()) if k != "threads")
        text = f"{space_fingerprint(self.supernet.space)}:{self.surrogates_id}:{self.vae}:{options}:{HELD_OUT}"
        return f"sr-proxy:{hashlib.sha1(text.encode()).hexdigest()[:12]}"


@register_evaluator("sr-proxy")
def sr_proxy_evaluator(context: EvaluationContext, vae: str | None = None, **options: Any) -> SRProxyEvaluator:
    """The search's ``sr-proxy`` evaluator (options: ``vae`` folder, default the teacher's, and the integers of
    :data:`OPTIONS`)."""
    merged = check_options(options, OPTIONS, "sr-proxy")
    if vae is None and getattr(context.teacher, "vae", None) is None:
        raise ConfigError("the teacher ships no VAE: give options.vae (a VAE folder)", key="evaluators.sr-proxy.vae")
    if vae is not None and not Path(vae).is_dir():
        raise ConfigError("VAE folder not found", source=vae, key="evaluators.sr-proxy.vae")
    return SRProxyEvaluator(context.get("supernet"), context.space.teacher, context.cache_dir / "sr_proxy", vae=vae,
                            surrogates_id=context.surrogates_id, **merged)
