"""Photographs for the image benchmarks (bench/intake.py, bench/pipeline.py): scikit-image's
sample photos, each use of one jittered so that every benchmark image has its own pixels."""

from __future__ import annotations

import numpy as np
from PIL import Image


def source_photo(name: str) -> Image.Image:
    from skimage import data  # only the image benchmarks need scikit-image

    return Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB")


def jittered(photo: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """``photo`` upscaled to cover ``size`` (plus a random zoom), randomly cropped, maybe
    mirrored, with a brightness change and sensor-like noise, so every image has its own pixels."""
    width, height = size
    scale = max(width / photo.width, height / photo.height) * rng.uniform(1.0, 1.3)
    big = photo.resize((int(photo.width * scale) + 1, int(photo.height * scale) + 1), Image.Resampling.BICUBIC)
    left = int(rng.integers(0, big.width - width + 1))
    top = int(rng.integers(0, big.height - height + 1))
    pixels = np.asarray(big.crop((left, top, left + width, top + height)), dtype=np.float32)
    pixels *= np.float32(rng.uniform(0.85, 1.15))
    pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(3.0)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image
