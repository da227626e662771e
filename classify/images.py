"""Pure Pillow functions: open untrusted bytes safely, orient, convert, hash, re-encode.

Nothing here touches the database or storage, so each step is testable on an image made in a test.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

# Formats we decode. Never EPS/PS/PDF (Ghostscript) or SVG; the real format comes from the bytes.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
DERIVATIVE_MAX_SIDE = 2048
DERIVATIVE_QUALITY = 90
DRAFT_SLACK = 0.9  # a JPEG may be decoded down to 90% of DERIVATIVE_MAX_SIDE when that saves a scale step
log = logging.getLogger(__name__)


class ImageRejected(Exception):
    """The bytes are not an image Loupe will take; the message is shown to the person uploading."""


@dataclass(frozen=True)
class Decoded:
    """An upload decoded: upright RGB pixels (possibly decoded at reduced size), the upright size
    of the original, and the format the bytes really are."""

    image: Image.Image
    width: int
    height: int
    format: str


# EXIF orientations that turn the picture a quarter: width and height swap.
_QUARTER_TURNS = {5, 6, 7, 8}


def decode_bytes(mode: str, size: tuple[int, int]) -> int:
    """Bytes a decode of this mode and size may hold at its peak, known from the header alone: the
    decoded pixels, one copy (turning it upright), and the RGB conversion when it is not RGB."""
    pixels = size[0] * size[1]
    per_pixel = _BYTES_PER_BAND.get(mode, 1) * Image.getmodebands(mode)
    return pixels * (2 * per_pixel + (0 if mode == "RGB" else 3))


_BYTES_PER_BAND = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}


def decode(data: bytes, *, max_pixels: int, max_side: int | None = None, max_bytes: int | None = None) -> Decoded:
    """Decode untrusted bytes into an upright sRGB image without metadata, or raise ``ImageRejected``.

    The header's dimensions are checked before any pixel is decoded: against ``max_pixels``, and
    the memory the decode would need (``decode_bytes``) against ``max_bytes``; a JPEG over that
    budget is decoded at a smaller scale instead, anything else is refused. Pillow's
    decompression-bomb warning is an error, only the first frame of an animation is used, EXIF
    orientation is applied so that what reviewers and models see is the right way up, an embedded
    colour profile is converted to sRGB, and every piece of metadata (EXIF, XMP, comments, text
    chunks, the profile) is dropped. With ``max_side``, a large JPEG is decoded at 1/2, 1/4 or 1/8
    scale (its longer side never below 90% of ``max_side``): libjpeg does that far faster than a
    full decode followed by a resize.
    """
    if not data:
        raise ImageRejected("The file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            fmt, (width, height) = image.format, image.size
            if width * height > max_pixels:
                raise ImageRejected(f"The image is {width}×{height} pixels; the limit is {max_pixels:,} pixels.")
            _fit_budget(image, fmt, max_side, max_bytes)
            if image.getexif().get(0x0112) in _QUARTER_TURNS:
                width, height = height, width
            image.seek(0)
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # no full-size copy when already upright
            return Decoded(pixels_only(image), width, height, fmt)
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected(
            "The file is not an image in a supported format (JPEG, PNG, WebP, GIF, BMP, TIFF)."
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
        raise ImageRejected(f"The image is too large to decode safely; the limit is {max_pixels:,} pixels.") from None
    except Exception as exc:  # hostile bytes can make decoders raise almost anything
        log.info("refused an undecodable upload: %r", exc)
        raise ImageRejected(f"The image is damaged or truncated ({exc.__class__.__name__}).") from None


def _fit_budget(image: Image.Image, fmt: str, max_side: int | None, max_bytes: int | None) -> None:
    """Before any pixel is decoded: ask libjpeg for a reduced scale (to ``max_side``, and further
    down to fit ``max_bytes``); refuse what still needs more memory than ``max_bytes``."""
    if fmt == "JPEG" and (max_side or max_bytes):
        # Pillow keeps *both* sides at least the requested box's: ask for a box of the image's
        # own shape, so only the longer side is held, to 90% of max_side (a 12 MP photo then
        # decodes at half size, 2016 px, four times less work).
        longer = max(image.size)
        floor = int(max_side * DRAFT_SLACK) if max_side else longer
        while max_bytes and floor > 1 and decode_bytes("RGB", _scaled(image.size, floor / longer)) > max_bytes:
            floor //= 2
        box = _scaled(image.size, floor / longer)
        image.draft("RGB", (max(1, box[0]), max(1, box[1])))
    if max_bytes and (needed := decode_bytes(image.mode, image.size)) > max_bytes:
        raise ImageRejected(f"The image is {image.width}×{image.height} pixels and would need "
                            f"{needed / 2**20:,.0f} MB of memory to decode; the limit is {max_bytes / 2**20:,.0f} MB.")


def _scaled(size: tuple[int, int], factor: float) -> tuple[int, int]:
    return int(size[0] * factor), int(size[1] * factor)


_SRGB = ImageCms.createProfile("sRGB")


def pixels_only(image: Image.Image) -> Image.Image:
    """The image as sRGB pixels and nothing else: an embedded colour profile is applied (a broken
    one is ignored), then every metadata entry (EXIF, XMP, comments, text chunks, the profile) is
    dropped, so nothing the file carried besides its picture can reach storage, a backend or an
    export, and the same picture always encodes (and hashes) the same."""
    profile = image.info.get("icc_profile")
    rgb = _to_srgb(image, profile) if profile else to_rgb(image)
    rgb.info = {}
    return rgb


def _to_srgb(image: Image.Image, profile: bytes) -> Image.Image:
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        if "srgb" in ImageCms.getProfileDescription(source).lower().replace(" ", ""):
            return to_rgb(image)  # already sRGB: nothing to convert
        if image.mode not in ("RGB", "CMYK", "L"):
            image = to_rgb(image)
        return ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        log.info("ignored an unusable colour profile: %r", exc)
        return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode to RGB: transparency is composited over white, 16-bit and CMYK converted properly."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping everything to white.
        return image.point(lambda value: value / 256).convert("L").convert("RGB")
    return image.convert("RGB")


def bounded(image: Image.Image, max_side: int = DERIVATIVE_MAX_SIDE) -> Image.Image:
    """A copy no larger than ``max_side`` on its longer side (aspect kept)."""
    if max(image.size) <= max_side:
        return image
    copy = image.copy()
    copy.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return copy


def encode_jpeg(image: Image.Image, quality: int = DERIVATIVE_QUALITY) -> bytes:
    """Re-encode as a baseline JPEG of the pixels alone: no EXIF, XMP, ICC profile or comment (Pillow
    would copy a comment over from ``image.info``; the explicit empty one stops it)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=False, comment=b"")
    return buffer.getvalue()


SOURCE_JPEG = "loupe.source_jpeg"


def remember_source(image: Image.Image, jpeg: bytes) -> Image.Image:
    """Note on ``image`` the JPEG it was decoded from, so a backend can send those bytes as they are
    (no second lossy encoding, no encoding cost). The note is ignored once the size changes."""
    image.info[SOURCE_JPEG] = (image.size, jpeg)
    return image


def jpeg_bytes(image: Image.Image, quality: int = DERIVATIVE_QUALITY) -> bytes:
    """The image as JPEG: the stored file's own bytes when the image came straight from it."""
    size, data = image.info.get(SOURCE_JPEG, (None, None))
    if data is not None and size == image.size and image.mode == "RGB":
        return data
    return encode_jpeg(image if image.mode == "RGB" else image.convert("RGB"), quality)


def derivative_sha256(jpeg: bytes) -> str:
    """SHA-256 of the re-encoded derivative. It is encoded from the pixels alone with fixed
    settings and no metadata, so the same picture hashes the same whatever the file it came in,
    and hashing ~250 KB of JPEG costs a tenth of hashing ~5 MB of raw pixels."""
    return hashlib.sha256(jpeg).hexdigest()


# --- Quality ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityRules:
    """A project's thresholds (Project.quality_rules); 0 turns a check off."""

    min_side: int = 32
    min_brightness: float = 0.04
    max_brightness: float = 0.98
    min_sharpness: float = 3.0
    max_aspect_ratio: float = 10.0


ANALYSIS_SIDE = 512


def analysis_copy(image: Image.Image) -> Image.Image:
    """A small greyscale copy for the quality checks and the perceptual hash: box-reduced by an
    integer factor to a longer side of 512-1023 px, a fraction of the cost of a resampling resize.
    An image that is already one passes through."""
    grey = image if image.mode == "L" else image.convert("L")
    factor = max(1, max(grey.size) // ANALYSIS_SIDE)
    return grey.reduce(factor) if factor > 1 else grey


def mean_brightness(image: Image.Image) -> float:
    """Mean luminance, 0 (black) to 1 (white)."""
    return float(np.asarray(analysis_copy(image), dtype=np.float32).mean() / 255.0)


def sharpness(image: Image.Image) -> float:
    """Variance of the Laplacian on the analysis copy: low means blurry (or flat).

    Sharp photographs measure in the hundreds; a heavy blur brings them under 3.
    """
    a = np.asarray(analysis_copy(image), dtype=np.float32)
    if min(a.shape) < 3:
        return 0.0
    laplacian = a[1:-1, :-2] + a[1:-1, 2:] + a[:-2, 1:-1] + a[2:, 1:-1] - 4 * a[1:-1, 1:-1]
    return float(laplacian.var())


def quality_problems(image: Image.Image, *, width: int, height: int, rules: QualityRules) -> list[str]:
    """Why a decodable image is still not worth classifying, in words a person understands.

    ``width``/``height`` are the original's; ``image`` may be a reduced copy.
    """
    problems = []
    if rules.min_side and min(width, height) < rules.min_side:
        problems.append(f"Too small: {width}×{height} pixels; at least {rules.min_side} pixels a side.")
    aspect = max(width, height) / max(1, min(width, height))
    if rules.max_aspect_ratio and aspect > rules.max_aspect_ratio:
        problems.append(f"Extreme shape: {aspect:.0f}:1; at most {rules.max_aspect_ratio:g}:1.")
    grey = analysis_copy(image)  # once for every check
    brightness = mean_brightness(grey)
    if rules.min_brightness and brightness < rules.min_brightness:
        problems.append(f"Too dark: mean brightness {brightness:.0%}; at least {rules.min_brightness:.0%}.")
    if rules.max_brightness and brightness > rules.max_brightness:
        problems.append(f"Too bright: mean brightness {brightness:.0%}; at most {rules.max_brightness:.0%}.")
    if rules.min_sharpness and not problems:
        score = sharpness(grey)
        if score < rules.min_sharpness:
            problems.append(f"Too blurry: sharpness {score:.1f}; at least {rules.min_sharpness:g}.")
    return problems


# --- Near duplicates -------------------------------------------------------------------------


def perceptual_hash(image: Image.Image) -> int:
    """64-bit difference hash (dHash): near-identical pictures differ in few bits.

    Returned as a signed 64-bit integer so that it fits a database BIGINT.
    """
    grey = analysis_copy(image).resize((9, 8), Image.Resampling.BOX)
    a = np.asarray(grey, dtype=np.int16)
    bits = (a[:, 1:] > a[:, :-1]).flatten()
    value = int("".join("1" if bit else "0" for bit in bits), 2)
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


#: The 64 bits of a dHash cut into five bands (shift, width), lowest bits first. Two hashes at
#: most four bits apart agree on at least one whole band (four differing bits touch at most four
#: of the five bands), so an index on each band finds every near duplicate (``Item.phash_band*``).
PHASH_BANDS = ((0, 13), (13, 13), (26, 13), (39, 13), (52, 12))


def phash_bands(value: int) -> tuple[int, ...]:
    """The bands of a (signed 64-bit) dHash, as the database computes them into ``Item.phash_band*``."""
    unsigned = value & ((1 << 64) - 1)
    return tuple((unsigned >> shift) & ((1 << width) - 1) for shift, width in PHASH_BANDS)
