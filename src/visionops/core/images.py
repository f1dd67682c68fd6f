"""Image bytes to pixels, once for everyone: validation, batch, the service, the pyfunc.

One format sniffing (PIL's signatures on the first bytes, never the file name or a
declared type), one truncated-JPEG check (the marker walk of `jpeg_end`), one size
check from the header before any pixel is decoded, then OpenCV decodes the pixels
as Ultralytics reads them (BGR uint8, EXIF orientation applied). A bad file is an
`ImageError` with a reason code each caller maps to its own outcome (a quarantine
reason, a `bad_files.csv` row, an HTTP status).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

# The formats training, batch and the service read. JPEG's plugin also opens MPO
# (the multi-picture JPEG cameras write with a .jpg name).
FORMATS = ("JPEG", "MPO", "PNG", "BMP", "WEBP", "TIFF")
FORMAT_NAMES = "JPEG, PNG, BMP, WebP or TIFF"
JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"

# Reason codes, in the order the checks run.
ZERO_BYTE = "zero_byte"
TOO_LARGE = "too_large"
UNREADABLE = "unreadable"
UNSUPPORTED_FORMAT = "unsupported_format"
TRUNCATED = "truncated"
REASONS = (ZERO_BYTE, TOO_LARGE, UNREADABLE, UNSUPPORTED_FORMAT, TRUNCATED)


class ImageError(ValueError):
    """Bytes that are not a usable image.

    Attributes:
        reason: One of `REASONS`.
        detail: What was found, for people.
        format: The format the bytes were sniffed as (None: not an image format).
        size: (width, height) from the header, when it was read.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        format: str | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.format = format
        self.size = size


# Decoded pixels of one image, e.g. 8000 x 5000: the service's cap per upload
# (`serving.limits`) and batch's default cap per video frame.
MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class Limits:
    """Caps checked before decoding (None: no cap).

    Attributes:
        max_bytes: The encoded size.
        max_pixels: width x height, read from the header (a decompression bomb
            is refused before its pixels exist).
    """

    max_bytes: int | None = None
    max_pixels: int | None = None


def sniff_format(data: bytes) -> str | None:
    """The PIL format name the first bytes announce, or None for no image format.

    Formats outside `FORMATS` are named too (`GIF`): callers refuse them as
    unsupported rather than unreadable.
    """
    Image.init()  # every plugin registered, once
    prefix = data[:16]
    known = [n for n in FORMATS if n != "MPO"]  # MPO shares JPEG's signature
    others = [n for n in Image.OPEN if n not in FORMATS]
    for name in known + others:
        accept = Image.OPEN[name][1]
        try:  # some plugins' checks fail on a few bytes rather than say no
            accepted = accept is not None and accept(prefix) is True
        except Exception:  # noqa: BLE001 - foreign bytes: not this format
            accepted = False
        if accepted:
            return name
    return None


def jpeg_end(data: bytes) -> int | None:
    """Returns the offset just past the JPEG end-of-image marker, or None.

    Walks the marker segments (skipping embedded thumbnails by their length)
    and the entropy-coded scans, so trailing data appended after the image
    does not count as part of it.
    """
    size, pos = len(data), 2
    while pos + 1 < size:
        if data[pos] != 0xFF:
            pos += 1  # libjpeg also skips stray bytes between markers
            continue
        marker = data[pos + 1]
        if marker == 0xD9:
            return pos + 2
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 1 if marker == 0xFF else 2
            continue
        if pos + 4 > size:
            return None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker != 0xDA:
            continue
        # Scan data: 0xFF is followed by 0x00 (stuffing) or a restart marker.
        while True:
            pos = data.find(b"\xff", pos)
            if pos < 0 or pos + 1 >= size:
                return None
            following = data[pos + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7:
                pos += 2
            elif following == 0xFF:
                pos += 1
            else:
                break
    return None


def is_truncated(data: bytes) -> bool:
    """Whether JPEG bytes stop before their end-of-image marker (the one check).

    Bytes after the marker (padding, a trailer) are not truncation; other formats
    are judged by their decoder.
    """
    return (
        data[:2] == JPEG_SOI and not data.endswith(JPEG_EOI) and jpeg_end(data) is None
    )


def describe_bytes(data: bytes) -> str:
    """Says what bytes that are no image look like (an HTML page, text...)."""
    try:
        text = data[:64].decode("utf-8")
    except UnicodeDecodeError:
        return "not a decodable image (no known image format)"
    if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return f"text, not image data: {text.strip()[:40]!r}"
    return "not a decodable image (no known image format)"


def check(data: bytes, limits: Limits | None = None) -> str:
    """Checks image bytes without decoding their pixels; returns the format.

    Raises:
        ImageError: zero_byte, too_large, unreadable (no image format),
            unsupported_format (a format outside `FORMATS`), truncated.
    """
    limits = limits or Limits()
    if not data:
        raise ImageError(ZERO_BYTE, "the file is empty")
    if limits.max_bytes is not None and len(data) > limits.max_bytes:
        raise ImageError(TOO_LARGE, f"{len(data)} bytes, over {limits.max_bytes}")
    name = sniff_format(data)
    if name is None:
        raise ImageError(UNREADABLE, describe_bytes(data))
    if name not in FORMATS:
        raise ImageError(
            UNSUPPORTED_FORMAT, f"{name} image: convert it to {FORMAT_NAMES}", name
        )
    if is_truncated(data):
        raise ImageError(
            TRUNCATED, "the JPEG stops before its end-of-image marker", name
        )
    return name


def _header_size(data: bytes, name: str) -> tuple[int, int]:
    """(width, height) from the header, opened by the sniffed format's plugin.

    The plugin is called directly: `Image.open` tries every plugin and may be
    wrapped by other libraries (Ultralytics installs a HEIF plugin from the
    network when a file is not identified).
    """
    open_format = Image.OPEN["JPEG" if name == "MPO" else name][0]
    try:
        with open_format(io.BytesIO(data), "") as probe:
            return probe.size
    except Exception as err:  # any parser failure on foreign bytes is a bad file
        raise ImageError(UNREADABLE, f"{name} header: {err}", name) from None


def decode(data: bytes, limits: Limits | None = None) -> np.ndarray:
    """Decodes image bytes into a BGR uint8 array, EXIF orientation applied.

    Args:
        data: The encoded file.
        limits: Caps on bytes and pixels, checked before decoding.

    Raises:
        ImageError: With the first reason that applies (see `check`); a file
            whose header reads but whose pixels do not decode is `truncated`
            when its decoder says so, else `unreadable`.
    """
    limits = limits or Limits()
    name = check(data, limits)
    width, height = _header_size(data, name)
    if limits.max_pixels is not None and width * height > limits.max_pixels:
        raise ImageError(
            TOO_LARGE,
            f"{width}x{height} pixels, over {limits.max_pixels}",
            name,
            (width, height),
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is not None and image.size:
        return image
    raise _decoder_error(data, name, (width, height))


def _decoder_error(data: bytes, name: str, size: tuple[int, int]) -> ImageError:
    """Why pixels OpenCV could not decode are bad, in PIL's words."""
    try:
        with Image.open(
            io.BytesIO(data), formats=["JPEG" if name == "MPO" else name]
        ) as im:
            im.load()
    except OSError as err:
        reason = TRUNCATED if "truncated" in str(err) else UNREADABLE
        return ImageError(reason, f"damaged {name}: {err}", name, size)
    except Exception as err:  # PIL raises many types on hostile files
        return ImageError(UNREADABLE, f"damaged {name}: {err}", name, size)
    return ImageError(UNREADABLE, f"{name} that OpenCV cannot decode", name, size)


def read(path, limits: Limits | None = None) -> np.ndarray:
    """Decodes an image file (see `decode`); an unreadable file is `unreadable`."""
    from pathlib import Path

    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ImageError(UNREADABLE, f"{type(err).__name__}: {err}") from None
    return decode(data, limits)
