"""Face anonymisation on real photos: faces hidden, everything else left alone."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import ultralytics
from skimage import data as skdata

from visionops.data.anonymize import (
    AnonymizeSettings,
    anonymize_dataset,
    detect_faces,
)
from visionops.data.manifest import Item, Manifest

ZIDANE = Path(ultralytics.__file__).parent / "assets" / "zidane.jpg"


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _stage(root: Path, images: dict[str, bytes]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    items = []
    for name, data in images.items():
        item_id = Path(name).stem
        (root / "images" / name).write_bytes(data)
        (root / "labels" / f"{item_id}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        items.append(
            Item(
                id=item_id,
                image=f"images/{name}",
                label=f"labels/{item_id}.txt",
                source=name,
                group=item_id,
            )
        )
    Manifest(source="unit", source_format="yolo", class_names=["x"], items=items).write(
        root
    )
    return root


def _decode(path: Path) -> np.ndarray:
    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR).astype(int)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return _bgr(skdata.astronaut())


@pytest.fixture(scope="module")
def staged(tmp_path_factory, astronaut) -> Path:
    images = {
        # PNG is lossless, so any pixel change comes from the anonymiser.
        "astronaut.png": cv2.imencode(".png", astronaut)[1].tobytes(),
        "zidane.jpg": ZIDANE.read_bytes(),
        "coffee.jpg": cv2.imencode(".jpg", _bgr(skdata.coffee()))[1].tobytes(),
    }
    return _stage(tmp_path_factory.mktemp("staged"), images)


@pytest.fixture(scope="module")
def anonymised(staged, tmp_path_factory):
    dest = tmp_path_factory.mktemp("anonymised") / "out"
    return dest, anonymize_dataset(staged, dest, AnonymizeSettings(), workers=2)


def test_report_counts_faces(anonymised):
    _, report = anonymised
    assert report.images == 3
    assert report.per_image == {"astronaut": 1, "zidane": 2}
    assert (report.images_with_faces, report.faces) == (2, 3)


def test_face_pixels_change_and_far_pixels_do_not(anonymised, staged, astronaut):
    dest, _ = anonymised
    ((x1, y1, x2, y2, score),) = detect_faces(astronaut, AnonymizeSettings())
    assert score > 0.5
    before = astronaut.astype(int)
    after = _decode(dest / "images" / "astronaut.png")
    cx, cy, rx, ry = (x1 + x2) // 2, (y1 + y2) // 2, (x2 - x1) // 4, (y2 - y1) // 4
    face = np.s_[int(cy - ry) : int(cy + ry), int(cx - rx) : int(cx + rx)]
    assert np.abs(after[face] - before[face]).mean() > 10
    # The bottom half of the picture is far below the (1.3x grown) face box.
    assert np.array_equal(after[300:], before[300:])


def test_zidane_faces_blurred_in_jpeg(anonymised):
    dest, _ = anonymised
    before, after = _decode(ZIDANE), _decode(dest / "images" / "zidane.jpg")
    assert before.shape == after.shape
    diff = np.abs(after - before).mean(axis=2)
    # Re-encoding at quality 95 moves far pixels a little; faces move a lot.
    assert diff[120:260, 940:1040].mean() > 8  # the standing man's face
    assert diff[500:, :400].mean() < 3  # bottom-left, no face


def test_faceless_image_labels_and_manifest_are_byte_identical(anonymised, staged):
    dest, _ = anonymised
    for relative in ("images/coffee.jpg", "labels/zidane.txt", "manifest.json"):
        assert (dest / relative).read_bytes() == (staged / relative).read_bytes()


def test_downscaled_detection_blurs_at_full_resolution(tmp_path, astronaut):
    big = cv2.resize(astronaut, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    settings = AnonymizeSettings(detect_size=640)
    small_boxes = detect_faces(astronaut, settings)
    big_boxes = detect_faces(big, settings)
    assert len(big_boxes) == 1
    np.testing.assert_allclose(big_boxes[:, :4], 2 * small_boxes[:, :4], rtol=0.1)

    staged = _stage(tmp_path / "src", {"big.png": cv2.imencode(".png", big)[1]})
    report = anonymize_dataset(staged, tmp_path / "out", settings)
    assert report.per_image == {"big": 1}
    after = _decode(tmp_path / "out" / "images" / "big.png")
    assert after.shape == big.shape
    x1, y1, x2, y2, _ = big_boxes[0]
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 4, (y2 - y1) / 4
    face = np.s_[int(cy - ry) : int(cy + ry), int(cx - rx) : int(cx + rx)]
    assert np.abs(after[face] - big[face].astype(int)).mean() > 10
    assert np.array_equal(after[600:], big[600:])


def test_disabled_copies_everything(staged, tmp_path):
    report = anonymize_dataset(
        staged, tmp_path / "out", AnonymizeSettings(enabled=False)
    )
    assert (report.images, report.faces, report.per_image) == (3, 0, {})
    for path in staged.rglob("*"):
        if path.is_file():
            copy = tmp_path / "out" / path.relative_to(staged)
            assert copy.read_bytes() == path.read_bytes()
