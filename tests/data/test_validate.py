"""Validation on a staged dataset holding one item per quarantine reason and per fix."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionops.data.manifest import Item, Manifest
from visionops.data.validate import (
    REASONS,
    ValidationSettings,
    validate_dataset,
)
from visionops.tasks import get_task

DETECT = get_task("detect")

GOOD_LABEL = "0 0.5 0.5 0.2 0.2\n"


def _image_bytes(seed: int, fmt: str = "JPEG", size=(64, 48), **save) -> bytes:
    """A small noise image, unique per seed so no two items share bytes."""
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, fmt, **save)
    return buffer.getvalue()


def _exif_rotated_jpeg(seed: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    return _image_bytes(seed, size=(40, 20), exif=exif.tobytes())


def _gif(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(_image_bytes(seed, "PNG"))).save(buffer, "GIF")
    return buffer.getvalue()


# id -> (image file name or None, image bytes, label text or None)
CASES: dict[str, tuple[str | None, bytes, str | None]] = {
    "good": ("good.jpg", _image_bytes(1), GOOD_LABEL),
    "image_missing": (None, b"", GOOD_LABEL),
    "zero_byte": ("zero_byte.jpg", b"", GOOD_LABEL),
    "unreadable": ("unreadable.jpg", b"<html>Access denied</html>", GOOD_LABEL),
    "truncated": ("truncated.jpg", _image_bytes(2)[:900], GOOD_LABEL),
    "unsupported_format": ("unsupported_format.gif", _gif(3), GOOD_LABEL),
    "image_too_small": (
        "image_too_small.png",
        _image_bytes(4, "PNG", (8, 8)),
        GOOD_LABEL,
    ),
    "label_missing": ("label_missing.jpg", _image_bytes(5), None),
    "label_empty": ("label_empty.jpg", _image_bytes(6), "\n"),
    "label_malformed": ("label_malformed.jpg", _image_bytes(7), "0 0.5 0.5 0.2\n"),
    "label_nan": ("label_nan.jpg", _image_bytes(8), "0 nan 0.5 0.2 0.2\n"),
    "box_out_of_range": (
        "box_out_of_range.jpg",
        _image_bytes(9),
        GOOD_LABEL + "0 0.5 0.5 1.5 0.2\n",
    ),
    "unknown_class": ("unknown_class.jpg", _image_bytes(10), "2 0.5 0.5 0.2 0.2\n"),
    "zero_area_box": ("zero_area_box.jpg", _image_bytes(11), "0 0.5 0.5 0.0 0.2\n"),
    "duplicate_image": ("duplicate_image.jpg", _image_bytes(1), GOOD_LABEL),
    # Accepted with a fix.
    "exif": ("exif.jpg", _exif_rotated_jpeg(12), GOOD_LABEL),
    "png_as_jpg": ("png_as_jpg.jpg", _image_bytes(13, "PNG"), GOOD_LABEL),
    "trailer": ("trailer.jpg", _image_bytes(14) + b"APPENDED VIDEO", GOOD_LABEL),
    "clipped": ("clipped.jpg", _image_bytes(15), "1 0.5 0.5 1.02 0.2\n"),
    "polygon": (
        "polygon.jpg",
        _image_bytes(16),
        "1 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n" + GOOD_LABEL,
    ),
    "dup_lines": ("dup_lines.jpg", _image_bytes(17), GOOD_LABEL + GOOD_LABEL),
}
EXPECTED_FIXES = {
    "exif": {"exif_rotation"},
    "png_as_jpg": {"extension_mismatch"},
    "trailer": {"jpeg_trailer_removed"},
    "clipped": {"box_clipped"},
    "polygon": {"polygon_to_box"},
    "dup_lines": {"duplicate_label_line"},
}
ACCEPTED = {"good", *EXPECTED_FIXES}


def _stage(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    items = []
    for item_id, (name, data, label) in CASES.items():
        name = name or f"{item_id}.jpg"  # listed in the manifest, never written
        if item_id != "image_missing":
            (root / "images" / name).write_bytes(data)
        if label is not None:
            (root / "labels" / f"{item_id}.txt").write_text(label)
        items.append(
            Item(
                id=item_id,
                image=f"images/{name}",
                label=None if label is None else f"labels/{item_id}.txt",
                source=f"export/{name}",
                group=item_id,
            )
        )
    Manifest(
        source="unit", source_format="yolo", class_names=["a", "b"], items=items
    ).write(root)
    return root


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    return _stage(tmp_path_factory.mktemp("staged"))


@pytest.fixture(scope="module", params=[1, 2], ids=["1worker", "2workers"])
def validated(request, staged, tmp_path_factory):
    dest = tmp_path_factory.mktemp(f"validated{request.param}") / "out"
    report = validate_dataset(
        staged, dest, ValidationSettings(), workers=request.param, task=DETECT
    )
    return dest, report


def test_every_item_lands_where_expected(validated):
    dest, report = validated
    reasons = {q.id: q.reason for q in report.quarantined}
    expected = {i: i for i in CASES if i not in ACCEPTED}
    assert reasons == expected
    assert report.items_in == len(CASES)
    assert report.items_in == report.accepted + len(report.quarantined)
    # Links out of the export and classes in conflict need a source or a
    # classification manifest: tests/data/test_classify.py and the fuzz suite;
    # polygon and mask reasons a segmentation one: tests/data/test_segment.py.
    assert set(report.counts_by_reason()) == {
        reason
        for reason in REASONS
        if reason not in ("outside_export", "label_conflict")
        and not reason.startswith(("polygon_", "mask_"))
    }

    manifest = Manifest.read(dest)
    assert [i.id for i in manifest.items] == [i for i in CASES if i in ACCEPTED]
    assert manifest.class_names == ["a", "b"]
    assert (manifest.source, manifest.source_format) == ("unit", "yolo")
    for item in manifest.items:
        assert (dest / item.image).is_file()
        assert (dest / item.label).is_file()


def test_fixes_are_listed_per_item(validated):
    _, report = validated
    fixes: dict[str, set[str]] = {}
    for fix in report.fixes:
        fixes.setdefault(fix.id, set()).add(fix.fix)
    assert fixes == EXPECTED_FIXES


def test_duplicate_names_the_kept_item(validated):
    _, report = validated
    (duplicate,) = [q for q in report.quarantined if q.reason == "duplicate_image"]
    assert "good" in duplicate.detail


def test_quarantine_holds_originals_and_csv(validated, staged):
    dest, report = validated
    folder = dest / "quarantine"
    with (folder / "quarantine.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["id"], r["reason"]) for r in rows] == [
        (q.id, q.reason) for q in report.quarantined
    ]
    truncated = CASES["truncated"][1]
    assert (folder / "truncated" / "truncated.jpg").read_bytes() == truncated
    assert (folder / "label_nan" / "label_nan.txt").is_file()
    # Nothing to copy for a missing image or a missing label, but the rest is.
    assert sorted(p.name for p in (folder / "image_missing").iterdir()) == [
        "image_missing.txt"
    ]
    assert sorted(p.name for p in (folder / "label_missing").iterdir()) == [
        "label_missing.jpg"
    ]
    assert (folder / "duplicate_image" / "duplicate_image.jpg").is_file()
    assert not (dest / "images" / "duplicate_image.jpg").exists()


def test_untouched_images_and_labels_are_byte_identical(validated, staged):
    dest, _ = validated
    for name in ("good.jpg", "clipped.jpg", "polygon.jpg"):
        assert (dest / "images" / name).read_bytes() == (
            staged / "images" / name
        ).read_bytes()
    assert (dest / "labels" / "good.txt").read_text() == GOOD_LABEL


def test_exif_rotation_is_applied_and_tag_removed(validated):
    dest, _ = validated
    with Image.open(dest / "images" / "exif.jpg") as image:
        assert image.size == (20, 40)  # stored 40x20, displayed portrait
        assert image.getexif().get(0x0112) is None
        assert image.format == "JPEG"


def test_extension_follows_content(validated, staged):
    dest, _ = validated
    item = next(i for i in Manifest.read(dest).items if i.id == "png_as_jpg")
    assert item.image == "images/png_as_jpg.png"
    assert (dest / item.image).read_bytes() == CASES["png_as_jpg"][1]
    assert not (dest / "images" / "png_as_jpg.jpg").exists()


def test_jpeg_trailer_is_cut_at_end_of_image(validated):
    dest, _ = validated
    data = (dest / "images" / "trailer.jpg").read_bytes()
    assert data == CASES["trailer"][1].removesuffix(b"APPENDED VIDEO")


def test_labels_are_clipped_boxed_and_deduplicated(validated):
    dest, _ = validated
    labels = dest / "labels"
    assert labels.joinpath("clipped.txt").read_text().split() == [
        "1",
        "0.500000",
        "0.500000",
        "1.000000",
        "0.200000",
    ]
    polygon = labels.joinpath("polygon.txt").read_text().splitlines()
    assert polygon == ["1 0.200000 0.250000 0.200000 0.300000", GOOD_LABEL.strip()]
    assert labels.joinpath("dup_lines.txt").read_text() == GOOD_LABEL


def test_keep_background_accepts_empty_labels(staged, tmp_path):
    report = validate_dataset(
        staged, tmp_path / "out", ValidationSettings(keep_background=True), task=DETECT
    )
    assert "label_empty" not in report.counts_by_reason()
    assert (tmp_path / "out" / "labels" / "label_empty.txt").read_text() == "\n"


def test_tolerance_decides_clip_or_quarantine(staged, tmp_path):
    report = validate_dataset(
        staged, tmp_path / "out", ValidationSettings(clip_tolerance=0.0), task=DETECT
    )
    assert {q.id for q in report.quarantined if q.reason == "box_out_of_range"} == {
        "box_out_of_range",
        "clipped",
    }


def test_refuses_non_empty_dest_and_missing_manifest(staged, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "old.txt").write_text("x")
    with pytest.raises(ValueError, match="empty"):
        validate_dataset(staged, tmp_path / "busy", ValidationSettings(), task=DETECT)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        validate_dataset(
            tmp_path / "busy", tmp_path / "out", ValidationSettings(), task=DETECT
        )


def test_refuses_labels_the_task_does_not_take(staged, tmp_path):
    """Box labels are no classification dataset: nothing is written."""
    with pytest.raises(ValueError, match="classify task cannot validate"):
        validate_dataset(
            staged, tmp_path / "out", ValidationSettings(), task=get_task("classify")
        )
    assert not (tmp_path / "out").exists()


def test_settings_reject_unknown_keys():
    with pytest.raises(ValueError, match="clip_tolerence"):
        ValidationSettings(clip_tolerence=0.1)
