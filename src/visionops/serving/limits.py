"""Request limits and image decoding for the service, testable without BentoML."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageOps

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # one image file
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024  # the whole request, form overhead too
MAX_PIXELS = 40_000_000  # e.g. 8000 x 5000
MAX_FILES = 64  # images in one request
MAX_PARTS = MAX_FILES + 16  # form parts in one request, files and fields
MAX_FIELD_BYTES = 1024  # one form field that is not a file
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF")  # JPEG's plugin also opens MPO
SEND_AN_IMAGE = "send a JPEG, PNG, BMP, WebP or TIFF file."


def megabytes(size: int) -> str:
    """A size in the unit of the limits: `20 MB` is 20 x 2**20 bytes."""
    value = size / 2**20
    return f"{value:.0f} MB" if value == int(value) else f"{value:.1f} MB"


def megapixels(pixels: int) -> str:
    """A pixel count in Mpx: `40 Mpx` is 40,000,000 pixels."""
    value = pixels / 1e6
    return f"{value:.0f} Mpx" if value == int(value) else f"{value:.1f} Mpx"


class InputError(ValueError):
    """A request the client must fix; `status` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def sniff_format(data: bytes) -> str:
    """The image format of upload bytes, from their first bytes (PIL's signatures).

    Raises:
        InputError: a format the service does not take, or not an image (415).
    """
    Image.init()  # every plugin registered, once
    prefix = data[:16]
    for name in FORMATS:
        if Image.OPEN[name][1](prefix) is True:
            return name
    for name, (_, accept) in Image.OPEN.items():
        if accept is not None and accept(prefix) is True:
            raise InputError(
                f"Unsupported image format {name}: {SEND_AN_IMAGE}", status=415
            )
    raise InputError(f"The upload is not a readable image: {SEND_AN_IMAGE}", 415)


def decode_image(data: bytes) -> np.ndarray:
    """Decodes upload bytes into a BGR array, applying EXIF orientation.

    The format is sniffed from the bytes, never taken from a declared type, and
    the image is opened by that format's PIL plugin directly: `Image.open` tries
    every plugin and may be wrapped by other libraries (Ultralytics installs a
    HEIF plugin from the network when a file is not identified).

    Raises:
        InputError: empty, not an image, truncated, or too many pixels.
    """
    if not data:
        raise InputError("The upload is empty: send an image file (JPEG, PNG, ...).")
    if len(data) > MAX_UPLOAD_BYTES:
        raise InputError(
            f"The upload is {megabytes(len(data))}; the limit is "
            f"{megabytes(MAX_UPLOAD_BYTES)}.",
            status=413,
        )
    open_format = Image.OPEN[sniff_format(data)][0]
    try:
        with open_format(io.BytesIO(data), "") as probe:
            # The size is in the header: checked before any pixel is decoded.
            if probe.width * probe.height > MAX_PIXELS:
                raise InputError(
                    f"The image is {probe.width}x{probe.height} pixels "
                    f"({megapixels(probe.width * probe.height)}); the limit is "
                    f"{megapixels(MAX_PIXELS)}.",
                    status=413,
                )
            # In place: no copy of the decoded pixels when nothing turns.
            ImageOps.exif_transpose(probe, in_place=True)
            probe.load()
            image = probe if probe.mode == "RGB" else probe.convert("RGB")
            rgb = np.asarray(image)
    except InputError:
        raise
    except Exception as err:  # any decoder failure on client bytes is a bad file
        raise InputError(f"The image is damaged or truncated: {err}") from None
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # one pass, contiguous
