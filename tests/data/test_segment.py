"""Segmentation ingestion: YOLO-seg, COCO polygons and RLE, mask images, checks."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from visionops.data.anonymize import FaceReport
from visionops.data.manifest import Item, Manifest
from visionops.data.masks import (
    BACKGROUND,
    IGNORE,
    parse_polygon_line,
    polygon_lines_to_class_map,
)
from visionops.data.sources import SourceError, stage_source
from visionops.data.split import plan_split
from visionops.data.validate import QUARANTINE_DIR, ValidationSettings, validate_dataset
from visionops.data.version import build_dataset_version
from visionops.tasks import get_task, ingestion_tasks
from visionops.tasks.segment import layout

REPO = Path(__file__).resolve().parents[2]
SHOE_SOLES = REPO / "data" / "sample" / "shoe-soles"
SETTINGS = ValidationSettings()
NO_FACES = FaceReport(images=0, images_with_faces=0, faces=0, per_image={})
FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def _jpeg(path: Path, size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3))
    Image.fromarray(pixels.astype(np.uint8)).save(path, "JPEG")
    return path


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if mode == "P":  # A palette PNG (as VOC ships): pixels are palette indices.
        height, width = array.shape
        image = Image.frombytes("P", (width, height), array.tobytes())
        image.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    image.save(path, "PNG")
    return path


def _version(staged: Path, work: Path, settings: ValidationSettings = SETTINGS):
    task = get_task(Manifest.read(staged).task)
    report = validate_dataset(staged, work / "validated", settings, task=task)
    plan = plan_split(work / "validated", FRACTIONS, seed=0)
    version = build_dataset_version(
        work / "validated",
        plan,
        work / "dataset",
        validation=report,
        faces=NO_FACES,
        quarantine=work / "validated" / QUARANTINE_DIR,
        task=task,
    )
    return report, version


# --- YOLO segmentation export (Roboflow, as exported) -----------------------


def test_polygon_export_is_detection_unless_segment_is_asked(tmp_path: Path) -> None:
    assert (
        stage_source(SHOE_SOLES, tmp_path / "a", tasks=ingestion_tasks()).task
        == "detect"
    )
    manifest = stage_source(
        SHOE_SOLES, tmp_path / "b", tasks=ingestion_tasks("segment")
    )
    assert manifest.task == "segment" and manifest.class_names == ["shoes"]
    assert len(manifest.items) == 62


def test_yolo_seg_polygons_survive_validation_and_versioning(tmp_path: Path) -> None:
    stage_source(SHOE_SOLES, tmp_path / "staged", tasks=ingestion_tasks("segment"))
    report, version = _version(tmp_path / "staged", tmp_path)
    assert "polygon_to_box" not in report.counts_by_fix()
    assert report.items_in == report.accepted + len(report.quarantined)
    assert version.task == "segment"
    assert layout.ultralytics_data(version.root) == version.root / "data.yaml"
    source_of = {i.id: i.source for i in Manifest.read(version.root).items}
    polygons = 0
    for split in ("train", "val", "test"):
        for image in layout.split_images(version.root, split):
            label = layout.label_file(version.root, image)
            assert label is not None
            original = SHOE_SOLES / source_of[image.stem]
            original_label = (
                original.parent.parent / "labels" / (original.stem + ".txt")
            )
            assert label.read_text() == original_label.read_text()
            for line in label.read_text().splitlines():
                _, points = parse_polygon_line(line)
                assert len(points) >= 3
                polygons += 1
            assert layout.mask_file(version.root, image) is None
    card = version.card
    counted = sum(card["splits"][s]["instances_per_class"]["shoes"] for s in FRACTIONS)
    assert counted == polygons > version.card["accepted"] // 2
    # Without masks, the ground truth is the polygons rasterised.
    image = layout.split_images(version.root, "test")[0]
    truth = layout.class_map(version.root, image)
    assert truth.shape == (480, 640)
    assert set(np.unique(truth).tolist()) == {BACKGROUND, 0}


# --- COCO segmentation -------------------------------------------------------


def _rle_string(counts: list[int]) -> str:
    """pycocotools' compressed RLE (rleToString)."""
    out = []
    for index, value in enumerate(counts):
        x = value - counts[index - 2] if index > 2 else value
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if c & 0x10 else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def _rle_counts(mask: np.ndarray) -> list[int]:
    flat = mask.T.reshape(-1)  # column-major
    counts, current, run = [], 0, 0
    for value in flat.tolist():
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return counts


def _coco_export(root: Path, annotations: list[dict]) -> Path:
    folder = root / "train"
    _jpeg(folder / "a.jpg", (100, 50))
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}],
        "categories": [
            {"id": 0, "name": "soles", "supercategory": "none"},
            {"id": 1, "name": "sole", "supercategory": "soles"},
            {"id": 2, "name": "heel", "supercategory": "soles"},
        ],
        "annotations": annotations,
    }
    (folder / "_annotations.coco.json").write_text(json.dumps(doc))
    return root


def test_coco_polygons_keep_their_points_and_drop_the_parent_category(
    tmp_path: Path,
) -> None:
    polygon = [10, 5, 60, 5, 60, 45, 10, 45]
    root = _coco_export(
        tmp_path / "export",
        [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [polygon]},
            {
                "id": 2,
                "image_id": 1,
                "category_id": 2,
                "bbox": [70, 10, 20, 20],
                "segmentation": [[70, 10, 90, 10, 80, 30]],
            },
        ],
    )
    manifest = stage_source(root, tmp_path / "staged", tasks=ingestion_tasks("segment"))
    assert manifest.task == "segment"
    assert manifest.class_names == ["sole", "heel"]
    lines = (tmp_path / "staged" / manifest.items[0].label).read_text().splitlines()
    assert lines == [
        "0 0.100000 0.100000 0.600000 0.100000 0.600000 0.900000 0.100000 0.900000",
        "1 0.700000 0.200000 0.900000 0.200000 0.800000 0.600000",
    ]
    report, version = _version(tmp_path / "staged", tmp_path / "work")
    assert report.accepted == 1 and version.card["class_names"] == ["sole", "heel"]
    # Unasked, the same export stays a detection dataset of boxes.
    detect = stage_source(root, tmp_path / "detect", tasks=ingestion_tasks())
    assert detect.task == "detect" and detect.class_names == ["sole", "heel"]
    boxes = (tmp_path / "detect" / detect.items[0].label).read_text().splitlines()
    assert all(len(line.split()) == 5 for line in boxes)


@pytest.mark.parametrize("compressed", [True, False], ids=["string", "list"])
def test_coco_rle_becomes_a_polygon_per_region(tmp_path: Path, compressed) -> None:
    mask = np.zeros((50, 100), np.uint8)
    mask[5:20, 10:40] = 1
    mask[30:45, 60:90] = 1  # a second region of the same object
    counts = _rle_counts(mask)
    rle = {"size": [50, 100], "counts": _rle_string(counts) if compressed else counts}
    root = _coco_export(
        tmp_path / "export",
        [{"id": 1, "image_id": 1, "category_id": 2, "iscrowd": 1, "segmentation": rle}],
    )
    manifest = stage_source(root, tmp_path / "staged", tasks=ingestion_tasks("segment"))
    lines = (tmp_path / "staged" / manifest.items[0].label).read_text().splitlines()
    assert len(lines) == 2 and all(line.startswith("1 ") for line in lines)
    painted = polygon_lines_to_class_map(lines, (50, 100))
    assert np.array_equal(painted == 1, mask.astype(bool))
    report = validate_dataset(
        tmp_path / "staged",
        tmp_path / "validated",
        SETTINGS,
        task=get_task(Manifest.read(tmp_path / "staged").task),
    )
    assert report.accepted == 1, report.quarantined


# --- mask images -------------------------------------------------------------


def _mask_export(root: Path) -> dict[str, np.ndarray]:
    """Mask images of background (0), road (1), car (2), with an ignored band."""
    (root).mkdir(parents=True)
    (root / "classes.json").write_text(
        json.dumps({"classes": ["background", "road", "car"], "ignore": 255})
    )
    masks = {}
    for n in range(6):
        mask = np.zeros((48, 64), np.uint8)
        mask[30:48, :] = 1  # road
        mask[5:15, 5 + n : 20 + n] = 2  # car
        mask[5:15, 40:55] = 2  # another car
        mask[0:2, :] = 255  # ignored
        split = "train" if n < 4 else "val"
        _jpeg(root / "images" / split / f"s{n}.jpg", seed=n)
        _png(root / "masks" / split / f"s{n}.png", mask, "P" if n == 0 else None)
        masks[f"s{n}"] = mask
    return masks


def test_mask_images_become_polygons_and_stay_masks(tmp_path: Path) -> None:
    masks = _mask_export(tmp_path / "export")
    manifest = stage_source(
        tmp_path / "export", tmp_path / "staged", tasks=ingestion_tasks()
    )
    assert (manifest.task, manifest.source_format) == ("segment", "masks")
    assert manifest.class_names == ["background", "road", "car"]
    assert (manifest.mask_ignore, manifest.mask_background) == (255, 0)
    assert {i.source_split for i in manifest.items} == {"train", "val"}
    with pytest.raises(SourceError, match="segmentation masks"):
        stage_source(
            tmp_path / "export", tmp_path / "detect", tasks=ingestion_tasks("detect")
        )

    report, version = _version(tmp_path / "staged", tmp_path / "work")
    assert report.accepted == 6 and report.counts_by_fix() == {"mask_to_polygons": 6}
    assert version.card["masks"] == {"images": 6, "ignore": 255, "background": 254}
    source_of = {i.id: Path(i.source).stem for i in Manifest.read(version.root).items}
    for split in ("train", "val", "test"):
        for image in layout.split_images(version.root, split):
            mask = masks[source_of[image.stem]]
            label = layout.label_file(version.root, image)
            assert label is not None
            classes = [parse_polygon_line(x)[0] for x in label.read_text().splitlines()]
            assert sorted(classes) == [1, 2, 2]  # one polygon per connected region
            assert layout.mask_file(version.root, image) is not None
            truth = layout.class_map(version.root, image)
            expected = mask.astype(np.int32)
            expected[mask == 0] = BACKGROUND
            expected[mask == 255] = IGNORE
            assert np.array_equal(truth, expected)
    counts = version.card["splits"]
    assert sum(counts[s]["instances_per_class"]["car"] for s in FRACTIONS) == 12


def test_masks_without_a_class_list_say_what_to_add(tmp_path: Path) -> None:
    root = tmp_path / "export"
    _jpeg(root / "images" / "a.jpg")
    _png(root / "masks" / "a.png", np.zeros((48, 64), np.uint8))
    with pytest.raises(SourceError, match="classes.json"):
        stage_source(root, tmp_path / "staged", tasks=ingestion_tasks())


def test_mask_problems_are_quarantined(tmp_path: Path) -> None:
    root = tmp_path / "export"
    root.mkdir()
    (root / "classes.txt").write_text("road\ncar\n")
    good = np.zeros((48, 64), np.uint8)
    good[10:30, 10:30] = 1
    colours = np.zeros((48, 64, 3), np.uint8)
    colours[..., 0] = 200
    colours[10:20, 10:20] = (0, 0, 255)
    unknown = good.copy()
    unknown[40:44, 40:44] = 7
    cases = {
        "good": good,
        "mask_size_mismatch": np.zeros((24, 32), np.uint8),
        "mask_unknown_value": unknown,
        "mask_unreadable": colours,
    }
    for n, (name, mask) in enumerate(cases.items()):
        _jpeg(root / "images" / f"{name}.jpg", seed=n)
        _png(root / "masks" / f"{name}.png", mask)
    _jpeg(root / "images" / "label_missing.jpg", seed=9)
    _jpeg(root / "images" / "broken_mask.jpg", seed=10)
    (root / "masks" / "broken_mask.png").write_bytes(b"<html>not a png</html>")
    stage_source(root, tmp_path / "staged", tasks=ingestion_tasks())
    report = validate_dataset(
        tmp_path / "staged",
        tmp_path / "validated",
        SETTINGS,
        task=get_task(Manifest.read(tmp_path / "staged").task),
    )
    reasons = {q.id.removeprefix("images__"): q.reason for q in report.quarantined}
    assert reasons == {
        "mask_size_mismatch": "mask_size_mismatch",
        "mask_unknown_value": "mask_unknown_value",
        "mask_unreadable": "mask_unreadable",
        "broken_mask": "mask_unreadable",
        "label_missing": "label_missing",
    }
    assert report.accepted == 1
    folder = tmp_path / "validated" / QUARANTINE_DIR / "mask_unknown_value"
    assert (folder / "images__mask_unknown_value.mask.png").is_file()
    detail = next(
        q.detail for q in report.quarantined if q.reason == "mask_unknown_value"
    )
    assert "7" in detail


def test_mask_of_an_exif_turned_image_is_turned_too(tmp_path: Path) -> None:
    root = tmp_path / "export"
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("background\nthing\n")
    stored = Image.fromarray(np.full((40, 60, 3), 90, np.uint8))  # 60 wide, 40 high
    exif = stored.getexif()
    exif[0x0112] = 6  # displayed turned 90 degrees: 40 wide, 60 high
    stored.save(root / "images" / "turned.jpg", "JPEG", exif=exif.tobytes())
    mask = np.zeros((40, 60), np.uint8)
    mask[0:10, 0:20] = 1  # drawn on the stored pixels
    _png(root / "masks" / "turned.png", mask)
    stage_source(root, tmp_path / "staged", tasks=ingestion_tasks())
    report = validate_dataset(
        tmp_path / "staged",
        tmp_path / "validated",
        SETTINGS,
        task=get_task(Manifest.read(tmp_path / "staged").task),
    )
    assert report.accepted == 1
    assert report.counts_by_fix() == {"exif_rotation": 1, "mask_to_polygons": 1}
    item = Manifest.read(tmp_path / "validated").items[0]
    image = cv2.imread(str(tmp_path / "validated" / item.image))
    turned = cv2.imread(str(tmp_path / "validated" / item.mask), cv2.IMREAD_UNCHANGED)
    assert image.shape[:2] == turned.shape == (60, 40)
    expected = np.asarray(Image.fromarray(mask).transpose(Image.Transpose.ROTATE_270))
    assert np.array_equal(turned == 1, expected == 1)


# --- polygon checks ----------------------------------------------------------

GOOD = "0 0.1 0.1 0.4 0.1 0.4 0.5 0.1 0.5\n"
POLYGON_CASES = {
    "good": (GOOD, None),
    "two_points": ("0 0.1 0.1 0.4 0.4\n", "polygon_too_few_points"),
    "repeated_points": (
        "0 0.1 0.1 0.1 0.1 0.4 0.4 0.4 0.4\n",
        "polygon_too_few_points",
    ),
    "bow_tie": ("0 0.1 0.1 0.5 0.5 0.5 0.1 0.1 0.5\n", "polygon_self_intersecting"),
    "collinear": ("0 0.1 0.1 0.2 0.2 0.3 0.3\n", "polygon_zero_area"),
    "odd_values": ("0 0.1 0.1 0.4 0.1 0.4\n", "label_malformed"),
    "far_outside": ("0 0.1 0.1 1.5 0.1 0.4 0.5\n", "box_out_of_range"),
    "class_2": ("2 0.1 0.1 0.4 0.1 0.4 0.5\n", "unknown_class"),
    "nan": ("0 0.1 nan 0.4 0.1 0.4 0.5\n", "label_nan"),
    "clipped": ("1 0.1 0.1 1.01 0.1 0.4 0.5\n", None),
}


def test_polygon_reasons_and_fixes(tmp_path: Path) -> None:
    root = tmp_path / "staged"
    items = []
    for n, (item_id, (label, _)) in enumerate(POLYGON_CASES.items()):
        _jpeg(root / "images" / f"{item_id}.jpg", seed=n)
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"{item_id}.txt").write_text(label)
        items.append(
            Item(
                id=item_id,
                image=f"images/{item_id}.jpg",
                label=f"labels/{item_id}.txt",
                source=item_id,
                group=item_id,
            )
        )
    Manifest(
        source="unit",
        source_format="yolo",
        class_names=["a", "b"],
        task="segment",
        items=items,
    ).write(root)
    report = validate_dataset(
        root,
        tmp_path / "validated",
        SETTINGS,
        task=get_task(Manifest.read(root).task),
    )
    reasons = {q.id: q.reason for q in report.quarantined}
    assert reasons == {k: v for k, (_, v) in POLYGON_CASES.items() if v}
    assert (tmp_path / "validated" / "labels" / "good.txt").read_text() == GOOD
    assert {(f.id, f.fix) for f in report.fixes} == {("clipped", "polygon_clipped")}
    clipped = (tmp_path / "validated" / "labels" / "clipped.txt").read_text()
    assert clipped == "1 0.100000 0.100000 1.000000 0.100000 0.400000 0.500000\n"
