"""Mutated image bytes fed to the intake: only the project's own ImageRejected may escape."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from classify import images, pipeline
from tests.base import noisy_image


def seed_files() -> list[bytes]:
    base = Image.open(io.BytesIO(noisy_image((120, 80, 60), seed=1, size=(48, 40))))
    files = []
    for fmt, kwargs in [("JPEG", {"quality": 80}), ("PNG", {}), ("GIF", {}), ("WEBP", {}), ("BMP", {}),
                        ("TIFF", {})]:
        buffer = io.BytesIO()
        base.save(buffer, format=fmt, **kwargs)
        files.append(buffer.getvalue())
    return files


SEEDS = seed_files()


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "truncate"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[position] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80]))
        elif kind == "cut":
            del data[position : position + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=32))
        else:
            del data[position:]
    return bytes(data)


@settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(mutated())
def test_only_image_rejected_escapes_the_intake(data):
    try:
        prepared = pipeline.preprocess(data, max_pixels=50_000_000)
    except images.ImageRejected as exc:
        assert str(exc)  # a reason a person can read
        return
    pipeline.check_quality(prepared, rules=images.QualityRules())
    assert Image.open(io.BytesIO(prepared.jpeg)).format == "JPEG"


@pytest.mark.parametrize("data", SEEDS)
def test_the_unmutated_seeds_are_accepted(data):
    assert pipeline.preprocess(data, max_pixels=50_000_000).width == 48
