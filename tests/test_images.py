"""Image decoding (modes, EXIF), seeded crops and bad-input errors of tocsr_nas.data.images."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from tocsr_nas.data import ImageCropDataset, builtin_image_files, list_image_files, load_image, resolve_image_files
from tocsr_nas.errors import ConfigError


def _gradient(height: int = 40, width: int = 60) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 4, y * 6, (x + y) * 2], axis=2).astype(np.uint8)


def _check(image: torch.Tensor, height: int, width: int) -> None:
    assert image.dtype == torch.float32 and image.shape == (3, height, width)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0


def test_rgb_png_and_jpeg(tmp_path):
    Image.fromarray(_gradient()).save(tmp_path / "a.png")
    Image.fromarray(_gradient()).save(tmp_path / "b.jpg", quality=95)
    png, jpg = load_image(tmp_path / "a.png"), load_image(tmp_path / "b.jpg")
    _check(png, 40, 60)
    _check(jpg, 40, 60)
    assert torch.allclose(png, torch.from_numpy(_gradient()).permute(2, 0, 1).float() / 255)
    assert float((png - jpg).abs().mean()) < 0.02


def test_grayscale_becomes_three_equal_channels(tmp_path):
    Image.fromarray(_gradient()[..., 0]).save(tmp_path / "g.png")
    image = load_image(tmp_path / "g.png")
    _check(image, 40, 60)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_rgba_drops_alpha(tmp_path):
    rgba = np.concatenate([_gradient(), np.full((40, 60, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    _check(image, 40, 60)
    assert torch.allclose(image, torch.from_numpy(_gradient()).permute(2, 0, 1).float() / 255)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_uses_full_range(tmp_path, suffix):
    values = (np.arange(40 * 60, dtype=np.uint16).reshape(40, 60) * 27)
    Image.fromarray(values).save(tmp_path / f"deep{suffix}")
    image = load_image(tmp_path / f"deep{suffix}")
    _check(image, 40, 60)
    assert image[0, -1, -1] == pytest.approx(values[-1, -1] / 65535, abs=1e-6)
    assert float(image.max()) > 0.9  # not clipped at 8-bit 255


def test_rgb_tiff(tmp_path):
    Image.fromarray(_gradient()).save(tmp_path / "c.tiff")
    _check(load_image(tmp_path / "c.tiff"), 40, 60)


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(_gradient()).save(tmp_path / "r.jpg", exif=exif, quality=95)
    image = load_image(tmp_path / "r.jpg")
    _check(image, 60, 40)  # width and height swapped


def test_crops_are_seeded_and_sized(tmp_path):
    Image.fromarray(_gradient(50, 70)).save(tmp_path / "a.png")
    files = list_image_files(tmp_path)
    first, again = ImageCropDataset(files, 32, 10, seed=3), ImageCropDataset(files, 32, 10, seed=3)
    other = ImageCropDataset(files, 32, 10, seed=4)
    assert len(first) == 10 and first[5].shape == (3, 32, 32)
    assert torch.equal(first[5], again[5])
    assert any(not torch.equal(first[i], other[i]) for i in range(10))
    with pytest.raises(IndexError):
        first[10]


def test_builtin_source_has_natural_colour_images():
    files = builtin_image_files()
    assert len(files) >= 6 and resolve_image_files("builtin") == files
    dataset = ImageCropDataset(files[:2], 64, 4)
    _check(dataset[0], 64, 64)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no image files"):
        list_image_files(tmp_path)


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        list_image_files(tmp_path / "nope")


def test_non_image_files_are_skipped_with_a_warning(tmp_path, caplog):
    Image.fromarray(_gradient()).save(tmp_path / "a.png")
    (tmp_path / "README.txt").write_text("notes")
    with caplog.at_level(logging.WARNING):
        files = list_image_files(tmp_path)
    assert [f.name for f in files] == ["a.png"]
    assert "README.txt" in caplog.text


@pytest.mark.parametrize("content", [b"not an image at all", b""])
def test_undecodable_image_names_the_file(tmp_path, content):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(ConfigError, match="bad.png: cannot read image") as err:
        ImageCropDataset(list_image_files(tmp_path), 16, 4)
    assert "\n" not in str(err.value)


def test_truncated_image_names_the_file(tmp_path):
    Image.fromarray(_gradient(200, 200)).save(tmp_path / "t.jpg", quality=95)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="t.jpg: cannot read image"):
        load_image(tmp_path / "t.jpg")


def test_image_smaller_than_crop_names_the_file(tmp_path):
    Image.fromarray(_gradient()).save(tmp_path / "small.png")
    with pytest.raises(ConfigError, match=r"small.png: image is 60x40, smaller than the 64x64 crop"):
        ImageCropDataset(list_image_files(tmp_path), 64, 4)
