"""Image folders as training data: decode any common image file to RGB float32 and draw seeded random crops.

Every image is decoded once, when a source is built, so a bad file fails early with a one-line
:class:`~tocsr_nas.errors.ConfigError` naming it. Policy for a folder's contents:

* files with an image extension (:data:`IMAGE_EXTENSIONS`) must decode, else ``ConfigError``;
* other files (``README.txt``, ``.DS_Store``, ...) are skipped with a logged warning;
* a folder with no image at all, or an image smaller than the crop, is a ``ConfigError``.

Decoding: EXIF orientation is applied; grayscale becomes three equal channels; an alpha channel is
dropped; 16-bit and 32-bit integer or float images are scaled by their type's range to ``[0, 1]``.
"""
from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..atomic import write_bytes
from ..errors import ConfigError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"})

# Natural colour photographs shipped inside scikit-image (no download needed).
BUILTIN_IMAGES = (
    "astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "ihc.png",
    "motorcycle_left.png", "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg",
)
BUILTIN = "builtin"

WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
"""Extensions :func:`write_image` writes, and the PIL format each one means."""

_DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


def load_image(path: str | Path) -> torch.Tensor:
    """Decode one image file into an RGB ``float32`` tensor of shape ``(3, H, W)`` with values in ``[0, 1]``."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            array = _to_rgb_array(image)
    except _DECODE_ERRORS as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"cannot read image ({reason})", source=path) from None
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def probe_images(files: Sequence[str | Path], min_side: int = 1) -> tuple[list[Path], list[str]]:
    """The files whose header reads and checks (without decoding the pixels) with both sides ``>= min_side``,
    and one ``"<file>: <reason>"`` for each other file."""
    usable, skipped = [], []
    for path in map(Path, files):
        try:
            with Image.open(path) as image:
                width, height = image.size
                image.verify()
        except _DECODE_ERRORS as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            skipped.append(f"{path}: cannot read image ({reason})")
            continue
        if min(width, height) < min_side:
            skipped.append(f"{path}: image is {width}x{height}, smaller than {min_side} px")
            continue
        usable.append(path)
    return usable, skipped


def write_image(image: Image.Image, path: str | Path) -> Path:
    """Save ``image`` in the format its extension names (:data:`WRITE_FORMATS`), replacing ``path`` atomically.

    JPEG and WebP hold 8 bits per channel, so 16-bit greyscale is scaled down to 8 bits for them; JPEG has no
    alpha channel, so an image with one is refused (PNG, WebP and TIFF keep it).
    """
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"cannot write images as '{path.suffix}'", source=path, allowed=sorted(WRITE_FORMATS))
    if fmt in {"JPEG", "WEBP"} and image.mode.startswith("I"):
        image = Image.fromarray((np.asarray(image, dtype=np.float64) / 257).round().clip(0, 255).astype(np.uint8), "L")
    if fmt == "JPEG" and "A" in image.getbands():
        raise ConfigError("JPEG cannot hold the alpha channel", source=path, allowed=[".png", ".tif", ".webp"])
    options = {"quality": 95} if fmt in {"JPEG", "WEBP"} else {}
    encoded = io.BytesIO()
    image.save(encoded, format=fmt, **options)
    return write_bytes(path, encoded.getvalue())


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """``(H, W, 3)`` float32 in ``[0, 1]`` from a PIL image of any mode (forces the full decode)."""
    if image.mode in {"I;16", "I;16B", "I;16L", "I;16N"}:
        gray = np.asarray(image, dtype=np.float32) / 65535.0
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "I":
        raw = np.asarray(image)
        scale = 65535.0 if raw.max(initial=0) <= 65535 else float(np.iinfo(np.int32).max)
        return np.repeat((raw.astype(np.float32) / scale).clip(0, 1)[..., None], 3, axis=2)
    if image.mode == "F":
        gray = np.asarray(image, dtype=np.float32).clip(0, 1)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "RGB":
        return np.asarray(image, dtype=np.float32) / 255.0
    if image.mode in {"P", "PA"} and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; other files are skipped with a warning."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError("image folder not found", source=folder)
    files = []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(path)
        else:
            log.warning("skipping %s: not an image file (allowed extensions: %s)", path,
                        ", ".join(sorted(IMAGE_EXTENSIONS)))
    if not files:
        raise ConfigError("no image files in folder", source=folder, allowed=sorted(IMAGE_EXTENSIONS))
    return files


def builtin_image_files() -> list[Path]:
    """Paths of the natural colour images that ship with scikit-image."""
    import skimage.data  # noqa: PLC0415  (only needed for the built-in source)

    root = Path(skimage.data.__file__).parent
    files = [root / name for name in BUILTIN_IMAGES]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise ConfigError(f"scikit-image is missing its bundled images: {', '.join(missing)}", source=root)
    return files


def resolve_image_files(source: str | Path) -> list[Path]:
    """Image files of a source: ``"builtin"`` (scikit-image's photographs) or a folder."""
    if str(source) == BUILTIN:
        return builtin_image_files()
    return list_image_files(source)


class ImageCropDataset(torch.utils.data.Dataset):
    """Seeded random crops (and optional horizontal/vertical flips) from a set of images held in memory.

    Item ``i`` is a pure function of ``(seed, i)``: the same index always gives the same crop, so a
    training run that resumes at step ``s`` sees exactly the batches it would have seen.

    Args:
        files: image files (see :func:`resolve_image_files`).
        crop_size: side of the square crops, in pixels.
        length: the number of items (the dataset is a virtual stream of crops).
        seed: base seed of the crop positions and flips.
        flips: draw random horizontal and vertical flips.
    """

    def __init__(self, files: Sequence[str | Path], crop_size: int, length: int, seed: int = 0,
                 flips: bool = True) -> None:
        if crop_size <= 0 or length <= 0:
            raise ConfigError(f"crop_size and length must be positive, got {crop_size} and {length}", key="crop_size")
        self.files = [Path(f) for f in files]
        if not self.files:
            raise ConfigError("no images given", key="files")
        self.images = [load_image(f) for f in self.files]
        for path, image in zip(self.files, self.images):
            height, width = image.shape[1:]
            if min(height, width) < crop_size:
                raise ConfigError(f"image is {width}x{height}, smaller than the {crop_size}x{crop_size} crop",
                                  source=path)
        self.crop_size, self.length, self.seed, self.flips = crop_size, length, seed, flips

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        image = self.images[int(rng.integers(len(self.images)))]
        height, width = image.shape[1:]
        top = int(rng.integers(height - self.crop_size + 1))
        left = int(rng.integers(width - self.crop_size + 1))
        crop = image[:, top:top + self.crop_size, left:left + self.crop_size]
        if self.flips:
            if rng.random() < 0.5:
                crop = crop.flip(2)
            if rng.random() < 0.5:
                crop = crop.flip(1)
        return crop.contiguous()


__all__ = ["BUILTIN", "BUILTIN_IMAGES", "IMAGE_EXTENSIONS", "ImageCropDataset", "builtin_image_files",
           "list_image_files", "load_image", "resolve_image_files"]
