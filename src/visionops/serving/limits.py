"""Request limits and image decoding for the service, testable without BentoML."""

from __future__ import annotations

import numpy as np

from visionops.core import images

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # one image file
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024  # the whole request, form overhead too
MAX_PIXELS = images.MAX_PIXELS  # one image's decoded pixels (core.images)
# Decoded pixels across all images of one request (3 bytes each: 300 MB), so a
# batch of small files that decode to 40 Mpx each cannot take gigabytes.
MAX_REQUEST_PIXELS = 100_000_000
MAX_FILES = 64  # images in one request
MAX_PARTS = MAX_FILES + 16  # form parts in one request, files and fields
MAX_FIELD_BYTES = 1024  # one form field that is not a file
# Seconds a request may take before it is answered 504 (BentoML's traffic timeout);
# its decoding and prediction stop at the next step past it (`uploads.Deadline`).
REQUEST_TIMEOUT_S = 30.0
SEND_AN_IMAGE = "send a JPEG, PNG, BMP, WebP or TIFF file."


def megabytes(size: int) -> str:
    """A size in the unit of the limits: `20 MB` is 20 x 2**20 bytes."""
    value = size / 2**20
    return f"{value:.0f} MB" if value == int(value) else f"{value:.1f} MB"


def megapixels(pixels: int) -> str:
    """A pixel count in Mpx: `40 Mpx` is 40,000,000 pixels."""
    value = pixels / 1e6
    return f"{value:.0f} Mpx" if value == int(value) else f"{value:.1f} Mpx"


LIMITS = images.Limits(max_bytes=MAX_UPLOAD_BYTES, max_pixels=MAX_PIXELS)


class InputError(ValueError):
    """A request the client must fix; `status` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class PixelBudget:
    """The decoded pixels one request may still take (`MAX_REQUEST_PIXELS`).

    Attributes:
        left: Pixels left.
    """

    def __init__(self, pixels: int | None = None) -> None:
        self.left = MAX_REQUEST_PIXELS if pixels is None else pixels


def decode_image(data: bytes, budget: PixelBudget | None = None) -> np.ndarray:
    """Decodes upload bytes into a BGR array, applying EXIF orientation.

    The format is sniffed from the bytes, never taken from a declared type
    (`visionops.core.images`); the size and the pixel count are checked before any
    pixel is decoded, the pixel count also against what is left of `budget`,
    which the decoded image then uses up.

    Raises:
        InputError: empty (400), too large or over the request's budget (413), not
            an image or an unsupported format (415), damaged or truncated (400).
    """
    limits = LIMITS
    if budget is not None:
        limits = images.Limits(
            max_bytes=MAX_UPLOAD_BYTES, max_pixels=min(MAX_PIXELS, budget.left)
        )
    try:
        frame = images.decode(data, limits)
    except images.ImageError as err:
        raise InputError(*_http(err, len(data))) from None
    if budget is not None:
        budget.left -= frame.shape[0] * frame.shape[1]
    return frame


def _http(err: images.ImageError, size: int) -> tuple[str, int]:
    """The service's message and HTTP status for an image reason."""
    if err.reason == images.ZERO_BYTE:
        return "The upload is empty: send an image file (JPEG, PNG, ...).", 400
    if err.reason == images.TOO_LARGE and err.size is not None:
        width, height = err.size
        if width * height <= MAX_PIXELS:  # refused by the request's budget
            return (
                f"The image is {width}x{height} pixels "
                f"({megapixels(width * height)}), more than the request has left: "
                f"the images of one request may decode to "
                f"{megapixels(MAX_REQUEST_PIXELS)} together (MAX_REQUEST_PIXELS); "
                "send fewer or smaller images per request.",
                413,
            )
        return (
            f"The image is {width}x{height} pixels "
            f"({megapixels(width * height)}); the limit is "
            f"{megapixels(MAX_PIXELS)}.",
            413,
        )
    if err.reason == images.TOO_LARGE:
        return (
            f"The upload is {megabytes(size)}; the limit is "
            f"{megabytes(MAX_UPLOAD_BYTES)}.",
            413,
        )
    if err.reason == images.UNSUPPORTED_FORMAT:
        return f"Unsupported image format {err.format}: {SEND_AN_IMAGE}", 415
    if err.format is None:  # no image format at all
        return f"The upload is not a readable image: {SEND_AN_IMAGE}", 415
    return f"The image is damaged or truncated: {err.detail}", 400
