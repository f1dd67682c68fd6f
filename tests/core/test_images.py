"""visionops.core.images: one decoder, one truncation check, one format sniffing."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from visionops.core import images


def _encoded(fmt: str, size: tuple[int, int] = (64, 48), **options) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _reason(data: bytes, limits: images.Limits | None = None) -> str:
    with pytest.raises(images.ImageError) as caught:
        images.decode(data, limits)
    return caught.value.reason


def test_a_good_jpeg_decodes_to_the_pixels_opencv_reads() -> None:
    data = _encoded("JPEG")
    image = images.decode(data)
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(image, expected)  # what Ultralytics and batch read


def test_a_png_named_jpg_is_read_by_its_bytes() -> None:
    data = _encoded("PNG")
    assert images.sniff_format(data) == "PNG"
    assert images.check(data) == "PNG"
    assert images.decode(data).shape == (48, 64, 3)


def test_a_truncated_jpeg_is_truncated_but_a_trailer_is_not() -> None:
    data = _encoded("JPEG")
    cut = data[: len(data) // 2]
    assert images.is_truncated(cut) and _reason(cut) == images.TRUNCATED
    padded = data + b"\x00" * 100  # bytes after the end marker
    assert not images.is_truncated(padded)
    assert images.jpeg_end(padded) == len(data)
    assert images.decode(padded).shape == (48, 64, 3)


def test_an_empty_file_is_zero_byte() -> None:
    assert _reason(b"") == images.ZERO_BYTE


def test_a_text_file_is_unreadable_and_said_to_be_text() -> None:
    with pytest.raises(images.ImageError) as caught:
        images.decode(b"<html>404 Not Found</html>\n")
    assert caught.value.reason == images.UNREADABLE
    assert caught.value.format is None
    assert "text" in caught.value.detail


@pytest.mark.parametrize("data", [b"x", b"ab", b"ab\n", b"\x00\x00\x01"])
def test_a_few_bytes_are_unreadable_not_an_error(data: bytes) -> None:
    # Some PIL format checks read 4 bytes and raise on fewer.
    assert _reason(data) == images.UNREADABLE


def test_a_gif_is_an_unsupported_format() -> None:
    with pytest.raises(images.ImageError) as caught:
        images.decode(_encoded("GIF"))
    assert caught.value.reason == images.UNSUPPORTED_FORMAT
    assert caught.value.format == "GIF"


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    """100 Mpx in a few KB: refused before a pixel is decoded."""
    buffer = io.BytesIO()
    Image.new("1", (10000, 10000)).save(buffer, format="PNG")
    bomb = buffer.getvalue()
    assert len(bomb) < 100_000
    with pytest.raises(images.ImageError) as caught:
        images.decode(bomb, images.Limits(max_pixels=40_000_000))
    assert caught.value.reason == images.TOO_LARGE
    assert caught.value.size == (10000, 10000)


def test_too_many_bytes_is_too_large() -> None:
    data = _encoded("PNG")
    assert _reason(data, images.Limits(max_bytes=len(data) - 1)) == images.TOO_LARGE
    assert images.decode(data, images.Limits(max_bytes=len(data))) is not None


def test_damaged_pixels_behind_a_good_header_are_not_an_image() -> None:
    data = bytearray(_encoded("PNG"))
    data[60:] = b"\x00" * (len(data) - 60)  # IDAT and IEND gone
    with pytest.raises(images.ImageError) as caught:
        images.decode(bytes(data))
    assert caught.value.reason in (images.UNREADABLE, images.TRUNCATED)
    assert caught.value.format == "PNG"  # the header said PNG: damaged, not text


def test_exif_orientation_is_applied() -> None:
    """A JPEG stored landscape with orientation 6 (rotate 90) reads as portrait."""
    image = Image.fromarray(np.zeros((40, 80, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes())
    assert images.decode(buffer.getvalue()).shape[:2] == (80, 40)


def test_every_caller_maps_the_same_reasons(tmp_path) -> None:
    """Batch rows, HTTP statuses and pyfunc errors come from the one decoder."""
    from visionops.batch.predict import read_image
    from visionops.engine.pyfunc import decode_image as pyfunc_decode
    from visionops.engine.pyfunc import image_to_b64
    from visionops.serving.limits import InputError
    from visionops.serving.limits import decode_image as service_decode

    cut = _encoded("JPEG")[:300]
    path = tmp_path / "cut.jpg"
    path.write_bytes(cut)
    assert read_image(path)[1] == "truncated"
    with pytest.raises(InputError) as caught:
        service_decode(cut)
    assert caught.value.status == 400 and "truncated" in str(caught.value)
    with pytest.raises(ValueError, match="image 3: truncated"):
        pyfunc_decode(image_to_b64(cut), 3)
    with pytest.raises(InputError) as caught:
        service_decode(b"just text")
    assert caught.value.status == 415
