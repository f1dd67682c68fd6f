"""Request limits and image decoding for the service, testable without BentoML."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000  # e.g. 8000 x 5000
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "MPO")

# Decoding refuses anything far beyond the limit before allocating it.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class InputError(ValueError):
    """A request the client must fix; `status` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def decode_image(data: bytes) -> np.ndarray:
    """Decodes upload bytes into a BGR array, applying EXIF orientation.

    Raises:
        InputError: empty, not an image, truncated, or too many pixels.
    """
    # A process-wide setting that other libraries reset (Ultralytics sets it to
    # None): re-assert it for every decode.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    if not data:
        raise InputError("The upload is empty: send an image file (JPEG, PNG, ...).")
    if len(data) > MAX_UPLOAD_BYTES:
        raise InputError(
            f"The upload is {len(data) / 1e6:.1f} MB; the limit is "
            f"{MAX_UPLOAD_BYTES / 1e6:.0f} MB.",
            status=413,
        )
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.format not in FORMATS:
                raise InputError(
                    f"Unsupported image format {probe.format}; send one of {FORMATS}.",
                    status=415,
                )
            if probe.width * probe.height > MAX_PIXELS:
                raise InputError(
                    f"The image is {probe.width}x{probe.height} pixels; the limit is "
                    f"{MAX_PIXELS:,} pixels.",
                    status=413,
                )
            image = ImageOps.exif_transpose(probe)
            image.load()
    except InputError:
        raise
    except Image.DecompressionBombError as err:
        raise InputError(
            f"The image is too large to decode: {err}", status=413
        ) from None
    except UnidentifiedImageError:
        raise InputError(
            "The upload is not an image: send a JPEG, PNG, ...", 415
        ) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"The image is damaged or truncated: {err}") from None
    rgb = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])
