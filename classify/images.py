"""Pure Pillow functions: open untrusted bytes safely, orient, convert, hash, re-encode.

Nothing here touches the database or storage, so each step is testable on an image made in a test.
"""

from __future__ import annotations

import hashlib
import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

# Formats we decode. Never EPS/PS/PDF (Ghostscript) or SVG; the real format comes from the bytes.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
DERIVATIVE_MAX_SIDE = 2048
DERIVATIVE_QUALITY = 90


class ImageRejected(Exception):
    """The bytes are not an image Loupe will take; the message is shown to the person uploading."""


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode untrusted bytes into an upright RGB image, or raise ``ImageRejected``.

    The header's dimensions are checked before any pixel is decoded, Pillow's decompression-bomb
    warning is an error, only the first frame of an animation is used, and EXIF orientation is
    applied so that what reviewers and models see is the right way up.
    """
    if not data:
        raise ImageRejected("The file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            if image.width * image.height > max_pixels:
                raise ImageRejected(
                    f"The image is {image.width}×{image.height} pixels; the limit is {max_pixels:,} pixels."
                )
            image.seek(0)
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # no full-size copy when already upright
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("The file is not an image in a supported format (JPEG, PNG, WebP, GIF, BMP, TIFF).") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("The image is too large to decode safely.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(f"The image is damaged or truncated ({exc.__class__.__name__}).") from None
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
    """Re-encode as a baseline JPEG with no metadata (no EXIF, no GPS, no ICC surprises)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=False)
    return buffer.getvalue()


def derivative_sha256(jpeg: bytes) -> str:
    """SHA-256 of the re-encoded derivative. It is encoded from the pixels alone with fixed
    settings and no metadata, so the same picture hashes the same whatever the file it came in,
    and hashing ~250 KB of JPEG costs a tenth of hashing ~5 MB of raw pixels."""
    return hashlib.sha256(jpeg).hexdigest()
