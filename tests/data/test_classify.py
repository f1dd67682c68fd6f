"""Classification sources, validation, layout and card: the data side of `classify`."""

from __future__ import annotations

import io
import shutil
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fakes.picsellia import FakeDatasetVersion, FakePicselliaClient
from visionops.data.anonymize import FaceReport
from visionops.data.manifest import IMAGE_CLASS, Manifest
from visionops.data.report import dataset_html
from visionops.data.sources import SourceError, open_source, stage_source
from visionops.data.split import plan_split
from visionops.data.validate import ValidationSettings, validate_dataset
from visionops.data.version import DatasetVersion, build_dataset_version, content_hash
from visionops.tasks import get_task, ingestion_tasks

CLASSIFY = get_task("classify")

REPO = Path(__file__).resolve().parents[2]
CHEST_SAMPLE = REPO / "data" / "sample" / "chest-xray"
CHEST_SMALL = REPO.parent / "shared" / "datasets" / "chest-xray-small"
FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (32, 40, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _class_folders(root: Path, per_class: int = 4, seed: int = 0) -> Path:
    for c, name in enumerate(("PNEUMONIA", "NORMAL")):
        for i in range(per_class):
            _write(
                root / name / f"person{i}_{name.lower()}_{i}.jpeg",
                _jpeg(seed + c * 100 + i),
            )
    return root


def _ingest(source: Path, work: Path, **split) -> DatasetVersion:
    stage_source(
        source, work / "staged", cache_dir=work / "cache", tasks=ingestion_tasks()
    )
    report = validate_dataset(
        work / "staged", work / "validated", ValidationSettings(), task=CLASSIFY
    )
    plan = plan_split(work / "validated", FRACTIONS, 42, **split)
    return build_dataset_version(
        work / "validated",
        plan,
        work / "dataset",
        validation=report,
        faces=FaceReport(images=0, images_with_faces=0, faces=0),
        quarantine=work / "validated" / "quarantine",
        task=CLASSIFY,
    )


def test_folder_per_class_is_a_classify_source(tmp_path):
    root = _class_folders(tmp_path / "xray")
    manifest = stage_source(root, tmp_path / "staged", tasks=ingestion_tasks())
    assert manifest.task == "classify"
    assert manifest.source_format == "folders"
    # Sorted, as Ultralytics numbers its class folders.
    assert manifest.class_names == ["NORMAL", "PNEUMONIA"]
    by_class = {Path(i.source).parts[0]: i.class_id for i in manifest.items}
    assert by_class == {"NORMAL": 0, "PNEUMONIA": 1}
    assert all(i.label is None for i in manifest.items)


@pytest.mark.parametrize("val_name", ["val", "valid"])
def test_split_folders_of_class_folders_keep_their_split(tmp_path, val_name):
    root = tmp_path / "xray"
    for split, offset in (("train", 0), (val_name, 10), ("test", 20)):
        _class_folders(root / split, per_class=2, seed=offset)
    manifest = stage_source(root, tmp_path / "staged", tasks=ingestion_tasks())
    assert manifest.task == "classify"
    splits = defaultdict(int)
    for item in manifest.items:
        splits[item.source_split] += 1
    assert splits == {"train": 4, "val": 4, "test": 4}


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "split-folders"])
def test_zip_of_class_folders(tmp_path, nested):
    root = tmp_path / "xray"
    if nested:
        _class_folders(root / "train")
        _class_folders(root / "val", seed=50)
    else:
        _class_folders(root)
    archive = tmp_path / "xray.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*.jpeg")):
            zf.write(path, "chest/" + path.relative_to(root).as_posix())
    manifest = stage_source(
        archive, tmp_path / "staged", cache_dir=tmp_path / "c", tasks=ingestion_tasks()
    )
    assert manifest.task == "classify"
    assert manifest.class_names == ["NORMAL", "PNEUMONIA"]
    assert len(manifest.items) == (16 if nested else 8)


def test_picsellia_classification_export(tmp_path):
    files = {f"img{i}.jpg": _jpeg(i) for i in range(4)}
    coco = {
        "images": [{"id": i, "file_name": n} for i, n in enumerate(files)],
        "categories": [{"id": 9, "name": "PNEUMONIA"}, {"id": 4, "name": "NORMAL"}],
        # Image-level labels: no bbox, no segmentation.
        "annotations": [
            {"id": i, "image_id": i, "category_id": 9 if i % 2 else 4, "bbox": []}
            for i in range(4)
        ],
    }
    version = FakeDatasetVersion(
        id="v1", dataset="xray", version="v1", files=files, coco=coco
    )
    source = open_source(
        "picsellia://v1",
        picsellia_client=FakePicselliaClient([version]),
        cache_dir=tmp_path / "cache",
    )
    manifest = source.stage(tmp_path / "staged")
    assert manifest.kind == IMAGE_CLASS and manifest.task is None
    assert manifest.class_names == ["NORMAL", "PNEUMONIA"]
    classes = {Path(i.source).name: i.class_id for i in manifest.items}
    assert classes == {"img0.jpg": 0, "img1.jpg": 1, "img2.jpg": 0, "img3.jpg": 1}


def test_task_setting_overrides_or_refuses(tmp_path, sample_dir):
    root = _class_folders(tmp_path / "xray")
    with pytest.raises(SourceError, match="image-level classes, which a detect"):
        stage_source(root, tmp_path / "a", tasks=ingestion_tasks("detect"))
    staged = stage_source(root, tmp_path / "b", tasks=ingestion_tasks("classify"))
    assert staged.task == "classify"
    assert stage_source(sample_dir, tmp_path / "c", tasks=ingestion_tasks()).task == (
        "detect"
    )


def test_same_bytes_under_two_classes_is_a_label_conflict(tmp_path):
    root = _class_folders(tmp_path / "xray")
    shutil.copyfile(
        root / "NORMAL" / "person0_normal_0.jpeg", root / "PNEUMONIA" / "copy.jpeg"
    )
    shutil.copyfile(
        root / "NORMAL" / "person1_normal_1.jpeg", root / "NORMAL" / "again.jpeg"
    )
    stage_source(root, tmp_path / "staged", tasks=ingestion_tasks())
    report = validate_dataset(
        tmp_path / "staged", tmp_path / "out", ValidationSettings(), task=CLASSIFY
    )
    reasons = {q.source: q.reason for q in report.quarantined}
    # Both copies of the conflicting image go; of the two same-class copies,
    # the first by source path (again.jpeg) is kept.
    assert reasons == {
        "NORMAL/person0_normal_0.jpeg": "label_conflict",
        "PNEUMONIA/copy.jpeg": "label_conflict",
        "NORMAL/person1_normal_1.jpeg": "duplicate_image",
    }
    assert report.items_in == report.accepted + len(report.quarantined) == 10
    kept = Manifest.read(tmp_path / "out")
    assert len(kept.items) == 7
    assert (tmp_path / "out" / "quarantine" / "label_conflict").is_dir()


def test_classify_version_layout_card_and_report(tmp_path):
    version = _ingest(CHEST_SAMPLE, tmp_path, group_by=r"person\d+")
    card = version.card
    assert version.task == "classify" and card["task"] == "classify"
    assert CLASSIFY.ultralytics_data(version) == version.root
    assert card["items_in"] == card["accepted"] + card["quarantined"] == 83
    total = 0
    for split in ("train", "val", "test"):
        images = CLASSIFY.split_images(version, split)
        total += len(images)
        assert len(images) == card["splits"][split]["images"]
        assert {p.parent.name for p in images} <= {"NORMAL", "PNEUMONIA"}
        assert sum(card["splits"][split]["images_per_class"].values()) == len(images)
        assert abs(card["split"]["achieved"][split] - FRACTIONS[split]) <= 0.03
    assert total == card["accepted"]
    assert card["hash"] == content_hash(version.root, CLASSIFY.layout.HASHED)
    # Ultralytics reads the folder as a 2-class classification dataset.
    from ultralytics.data.utils import check_cls_dataset

    data = check_cls_dataset(str(CLASSIFY.ultralytics_data(version)))
    assert data["nc"] == 2 and data["names"] == {0: "NORMAL", 1: "PNEUMONIA"}
    page = dataset_html(version, CLASSIFY)
    assert "Images per class" in page and "data:image/jpeg;base64," in page
    # Tiles show the original file names, not the staged ids.
    assert "IM-00" in page or "person" in page
    assert "NORMAL__" not in page


def test_no_patient_crosses_splits_on_real_xrays(tmp_path):
    if not CHEST_SMALL.is_dir():
        pytest.skip(f"{CHEST_SMALL} is not present beside the checkout")
    stage_source(CHEST_SMALL, tmp_path / "staged", tasks=ingestion_tasks())
    validate_dataset(
        tmp_path / "staged", tmp_path / "out", ValidationSettings(), task=CLASSIFY
    )
    plan = plan_split(tmp_path / "out", FRACTIONS, 42, group_by=r"person\d+")
    manifest = Manifest.read(tmp_path / "out")
    splits_of = defaultdict(set)
    for item in manifest.items:
        name = Path(item.source).name
        if name.startswith("person"):
            splits_of[name.split("_")[0]].add(plan.assignment[item.id])
    assert len(splits_of) > 20
    assert all(len(s) == 1 for s in splits_of.values()), splits_of
    for split, target in FRACTIONS.items():
        assert abs(plan.achieved[split] - target) <= 0.03, plan.achieved
        assert all(n > 0 for n in plan.images_per_class[split].values())
