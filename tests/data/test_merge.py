"""A reviewed batch merged into a dataset version: the test split stays, new items
go to train and val, a corrected label wins, a bad batch is refused by name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from visionops.core.files import sha256_file
from visionops.data.anonymize import AnonymizeSettings, anonymize_dataset
from visionops.data.merge import MergeError, check_batch, merge_batch
from visionops.data.sources import stage_source
from visionops.data.split import plan_split
from visionops.data.validate import ValidationSettings, validate_dataset
from visionops.data.version import DatasetVersion, build_dataset_version
from visionops.tasks import get_task

TASK = get_task("detect")
FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def split_files(root: Path, split: str) -> dict[str, str]:
    """Every file of one split (images and labels) with its sha256."""
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for top in ("images", "labels")
        for p in sorted((root / top / split).glob("*"))
    }


def review_batch(parent: DatasetVersion, dest: Path, new: int = 3) -> Path:
    """A labelled batch as `--pipeline review` writes it: images/, labels/,
    data.yaml, review.csv; `new` unseen images and one parent train image whose
    box a labeller moved."""
    (dest / "images").mkdir(parents=True)
    (dest / "labels").mkdir()
    train = sorted((parent.root / "images" / "train").glob("*"))
    rows = ["image,source,reason,confidence,model_version"]
    for i, image in enumerate(train[:new]):
        name = f"prod-{i:03d}.jpg"  # mirrored: bytes the parent does not hold
        Image.open(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
            dest / "images" / name, quality=90
        )
        (dest / "labels" / f"prod-{i:03d}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        rows.append(f"images/{name},service,near_threshold,0.31,1")
    corrected = train[-1]
    shutil.copyfile(corrected, dest / "images" / corrected.name)
    (dest / "labels" / f"{corrected.stem}.txt").write_text("0 0.4 0.4 0.1 0.1\n")
    rows.append(f"images/{corrected.name},batch,empty,0.0,1")
    (dest / "data.yaml").write_text(
        yaml.safe_dump({"names": parent.card["class_names"]})
    )
    (dest / "review.csv").write_text("\n".join(rows) + "\n")
    return dest


def ingest_merge(
    batch: Path, parent: DatasetVersion, work: Path, *, refresh_test: bool = False
) -> DatasetVersion:
    """The ingestion stages as the pipeline runs them with `merge_with`."""
    stage_source(batch, work / "staged", tasks=[TASK])
    report = validate_dataset(
        work / "staged", work / "valid", ValidationSettings(), 1, task=TASK
    )
    faces = anonymize_dataset(
        work / "valid", work / "anon", AnonymizeSettings(enabled=False), 1
    )
    kept, lineage = merge_batch(
        parent, "3", work / "anon", work / "merged", task=TASK,
        refresh_test=refresh_test,
    )  # fmt: skip
    plan = plan_split(work / "merged", FRACTIONS, 42, fixed=kept)
    return build_dataset_version(
        work / "merged",
        plan,
        work / "dataset",
        validation=report,
        faces=faces,
        task=TASK,
        lineage=lineage.model_dump(),
    )


def test_merge_keeps_the_test_split_and_adds_to_train_and_val(
    tiny_dataset: DatasetVersion, tmp_path: Path
) -> None:
    parent = tiny_dataset
    before = {s: split_files(parent.root, s) for s in ("train", "val", "test")}
    batch = review_batch(parent, tmp_path / "batch")
    merged = ingest_merge(batch, parent, tmp_path / "work")

    assert split_files(merged.root, "test") == before["test"]  # byte for byte
    # Staging names an item after its path in the batch: images__prod-000.
    new = {p.stem[-8:]: p.parent.name for p in merged.root.glob("images/*/*prod-*")}
    assert sorted(new) == ["prod-000", "prod-001", "prod-002"]
    assert set(new.values()) <= {"train", "val"}
    # The moved box replaced the parent's label; the image stayed in train.
    corrected = sorted((parent.root / "images" / "train").glob("*"))[-1]
    label = merged.root / "labels" / "train" / f"{corrected.stem}.txt"
    assert label.read_text() == "0 0.4 0.4 0.1 0.1\n"
    parent_label = parent.root / "labels" / "train" / f"{corrected.stem}.txt"
    assert (
        sha256_file(parent_label)
        == before["train"][f"labels/train/{corrected.stem}.txt"]
    )  # the parent's own file is untouched (no write through a hard link)
    images = {s: merged.card["splits"][s]["images"] for s in ("train", "val", "test")}
    old = {s: parent.card["splits"][s]["images"] for s in ("train", "val", "test")}
    assert images["test"] == old["test"]
    assert images["train"] + images["val"] == old["train"] + old["val"] + 3
    lineage = merged.card["lineage"]
    assert lineage["parent_version"] == "3"
    assert lineage["parent_hash"] == parent.hash
    assert (lineage["reviewed"], lineage["added"]) == (4, 3)
    assert lineage["relabelled"] == [corrected.stem]
    assert merged.hash != parent.hash


def test_refresh_test_splits_everything_again(
    tiny_dataset: DatasetVersion, tmp_path: Path
) -> None:
    batch = review_batch(tiny_dataset, tmp_path / "batch", new=12)
    merged = ingest_merge(batch, tiny_dataset, tmp_path / "work", refresh_test=True)
    assert merged.card["lineage"]["refresh_test"] is True
    assert split_files(merged.root, "test") != split_files(tiny_dataset.root, "test")


@pytest.mark.parametrize(
    ("breaks", "says"),
    [
        ("missing_image", "prod-000.txt: missing image"),
        ("unknown_class", "class 'cat' is not a class of dataset v3"),
        ("coordinate", "prod-001.txt: line 1: coordinate 1.3 is outside 0..1"),
        ("class_id", "prod-001.txt: line 1: class id 4 is past the 1 class"),
        ("review_csv", "review.csv: line 2: missing image images/prod-000.jpg"),
    ],
)
def test_a_bad_batch_is_refused_naming_the_file(
    tiny_dataset: DatasetVersion, tmp_path: Path, breaks: str, says: str
) -> None:
    batch = review_batch(tiny_dataset, tmp_path / "batch")
    if breaks == "missing_image":
        (batch / "images" / "prod-000.jpg").unlink()
    elif breaks == "unknown_class":
        (batch / "data.yaml").write_text(yaml.safe_dump({"names": ["board", "cat"]}))
    elif breaks == "coordinate":
        (batch / "labels" / "prod-001.txt").write_text("0 1.3 0.5 0.2 0.2\n")
    elif breaks == "class_id":
        (batch / "labels" / "prod-001.txt").write_text("4 0.5 0.5 0.2 0.2\n")
    else:
        (batch / "images" / "prod-000.jpg").unlink()
        (batch / "labels" / "prod-000.txt").unlink()
    with pytest.raises(MergeError) as err:
        check_batch(
            batch,
            tiny_dataset.card["class_names"],
            task=TASK,
            version="3",
            settings=ValidationSettings(),
        )
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_good_batch_passes_the_check(
    tiny_dataset: DatasetVersion, tmp_path: Path
) -> None:
    batch = review_batch(tiny_dataset, tmp_path / "batch")
    check_batch(
        batch,
        tiny_dataset.card["class_names"],
        task=TASK,
        version="3",
        settings=ValidationSettings(),
    )


def test_a_new_copy_of_a_test_photo_is_held_out(
    tiny_dataset: DatasetVersion, tmp_path: Path
) -> None:
    from visionops.data.manifest import Manifest, group_key

    batch = review_batch(tiny_dataset, tmp_path / "batch", new=1)
    test = tiny_dataset.root / "images" / "test"
    test_ids = {p.stem for p in test.iterdir()}
    held = next(i for i in Manifest.read(tiny_dataset.root).items if i.id in test_ids)
    group = group_key(Path(held.source).name)
    # Another Roboflow copy of a test photo: the same group, other bytes.
    copy = batch / "images" / f"{group}.rf.{'0' * 32}.jpg"
    image = Image.open(test / Path(held.image).name)
    image.transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(copy)
    (batch / "labels" / f"{copy.stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    merged = ingest_merge(batch, tiny_dataset, tmp_path / "work")
    lineage = merged.card["lineage"]
    assert len(lineage["held_out"]) == 1 and lineage["added"] == 1
    assert split_files(merged.root, "test") == split_files(tiny_dataset.root, "test")
    assert not list(merged.root.glob(f"images/*/*{group}.rf.{'0' * 32}*"))


def test_a_classification_batch_merges_by_class_name(
    classify_folder: Path, tmp_path: Path
) -> None:
    task = get_task("classify")
    work = tmp_path / "parent"
    stage_source(classify_folder, work / "staged", tasks=[task])
    report = validate_dataset(
        work / "staged", work / "valid", ValidationSettings(), 1, task=task
    )
    faces = anonymize_dataset(
        work / "valid", work / "anon", AnonymizeSettings(enabled=False), 1
    )
    plan = plan_split(work / "anon", FRACTIONS, 42)
    parent = build_dataset_version(
        work / "anon", plan, work / "v1", validation=report, faces=faces, task=task
    )
    # A batch in class folders, PNEUMONIA first: ids differ, names match.
    batch = tmp_path / "batch"
    normal = sorted((parent.root / "train" / "NORMAL").iterdir())
    (batch / "PNEUMONIA").mkdir(parents=True)
    (batch / "NORMAL").mkdir()
    Image.open(normal[0]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        batch / "NORMAL" / "new.jpeg"
    )
    shutil.copyfile(normal[1], batch / "PNEUMONIA" / normal[1].name)  # relabelled
    check_batch(
        batch, parent.card["class_names"], task=task, version="1",
        settings=ValidationSettings(),
    )  # fmt: skip
    stage_source(batch, tmp_path / "b" / "staged", tasks=[task])
    b_report = validate_dataset(
        tmp_path / "b" / "staged", tmp_path / "b" / "valid", ValidationSettings(), 1,
        task=task,
    )  # fmt: skip
    kept, lineage = merge_batch(
        parent, "1", tmp_path / "b" / "valid", tmp_path / "merged", task=task
    )
    plan = plan_split(tmp_path / "merged", FRACTIONS, 42, fixed=kept)
    merged = build_dataset_version(
        tmp_path / "merged", plan, tmp_path / "v2", validation=b_report,
        faces=faces, task=task, lineage=lineage.model_dump(),
    )  # fmt: skip
    assert (lineage.added, len(lineage.relabelled)) == (1, 1)
    assert (merged.root / "train" / "PNEUMONIA" / normal[1].name).is_file()
    assert not (merged.root / "train" / "NORMAL" / normal[1].name).exists()
    assert sorted(p.name for p in (merged.root / "test").rglob("*.*")) == sorted(
        p.name for p in (parent.root / "test").rglob("*.*")
    )
