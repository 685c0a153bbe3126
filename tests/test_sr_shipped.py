"""The shipped x4 SR model: small fp16 files with a model card, the default of `upscale`, better than bicubic."""
from __future__ import annotations

import numpy as np
import skimage.data
import torch
from PIL import Image
from safetensors import safe_open

from tocsr_nas.cli import main
from tocsr_nas.degradations import BicubicDegradation
from tocsr_nas.sr.metrics import psnr_y
from tocsr_nas.sr.model import load_sr_model
from tocsr_nas.sr.pipeline import upsample_lr
from tocsr_nas.sr.shipped import DEFAULT_SR_MODEL, WEIGHTS_DIR

FOLDER = WEIGHTS_DIR / DEFAULT_SR_MODEL


def test_shipped_sr_model_is_small_fp16_documented_and_loads():
    files = [p for p in FOLDER.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 15 * 2**20
    assert (FOLDER / "MODEL_CARD.md").is_file()
    for path in (p for p in files if p.suffix == ".safetensors"):
        with safe_open(str(path), "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}, path
    model = load_sr_model(FOLDER, kind="sr-onestep")
    assert model.scale == 4 and model.light is not None


def test_upscale_without_model_beats_bicubic_on_a_held_out_photo(tmp_path):
    # chelsea (the cat) is a scikit-image photo; the model was trained on Sun-Hays 80 only
    hr = torch.from_numpy(skimage.data.chelsea()[60:188, 150:278].astype(np.float32) / 255).permute(2, 0, 1)
    lr = (BicubicDegradation(4)(hr) * 255).round() / 255
    Image.fromarray((lr * 255).round().byte().permute(1, 2, 0).numpy()).save(tmp_path / "lr.png")
    torch.set_num_threads(2)
    assert main(["upscale", str(tmp_path / "lr.png"), "-o", str(tmp_path / "sr.png")]) == 0
    with Image.open(tmp_path / "sr.png") as image:
        assert image.size == (128, 128)
        sr = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
    assert psnr_y(sr, hr, 4) > psnr_y(upsample_lr(lr, 4), hr, 4)
