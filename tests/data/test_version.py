"""Versioned datasets: YOLO layout, a stable content hash, a card that adds up."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionops.data.anonymize import AnonymizeSettings, anonymize_dataset
from visionops.data.sources import stage_source
from visionops.data.split import plan_split
from visionops.data.validate import ValidationSettings, validate_dataset
from visionops.data.version import DatasetVersion, build_dataset_version, content_hash
from visionops.tasks import get_task, ingestion_tasks

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}
HASHED = get_task("detect").layout.HASHED


def _ingest(source: Path, work: Path, workers: int, seed: int = 42) -> DatasetVersion:
    manifest = stage_source(source, work / "staged", tasks=ingestion_tasks())
    task = get_task(manifest.task)
    report = validate_dataset(
        work / "staged", work / "validated", ValidationSettings(), workers, task=task
    )
    faces = anonymize_dataset(
        work / "validated", work / "anon", AnonymizeSettings(), workers
    )
    plan = plan_split(work / "anon", FRACTIONS, seed)
    return build_dataset_version(
        work / "anon",
        plan,
        work / f"dataset-{seed}",
        validation=report,
        faces=faces,
        quarantine=work / "validated" / "quarantine",
        settings={"seed": seed},
        task=task,
    )


@pytest.fixture(scope="module")
def versions(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    one = _ingest(sample_dir, tmp_path_factory.mktemp("one"), workers=1)
    two_dir = tmp_path_factory.mktemp("two")
    two = _ingest(sample_dir, two_dir, workers=2)
    return {"one": one, "two": two, "two_dir": two_dir}


def test_hash_is_stable_across_runs_and_worker_counts(versions: dict) -> None:
    assert versions["one"].hash == versions["two"].hash
    assert versions["one"].hash == content_hash(versions["one"].root, HASHED)


def test_hash_changes_with_settings(versions: dict) -> None:
    work = versions["two_dir"]
    manifest_dir = work / "anon"
    plan = plan_split(manifest_dir, FRACTIONS, seed=7)
    from visionops.data.anonymize import FaceReport
    from visionops.data.validate import ValidationReport

    other = build_dataset_version(
        manifest_dir,
        plan,
        work / "dataset-7",
        validation=ValidationReport(items_in=61, accepted=61),
        faces=FaceReport(images=61, images_with_faces=0, faces=0, per_image={}),
        task=get_task("detect"),
    )
    assert other.hash != versions["two"].hash


def test_card_adds_up(versions: dict) -> None:
    card = versions["one"].card
    assert card["items_in"] == card["accepted"] + card["quarantined"] == 61
    assert sum(s["images"] for s in card["splits"].values()) == card["accepted"]
    for split, info in card["splits"].items():
        on_disk = list((versions["one"].root / "images" / split).iterdir())
        labels = list((versions["one"].root / "labels" / split).iterdir())
        assert len(on_disk) == len(labels) == info["images"]
        boxes = sum(len(p.read_text().split("\n")) - 1 for p in labels)
        assert boxes == sum(info["boxes_per_class"].values())
    assert card["class_names"] == ["board"]
    assert card["split"]["seed"] == 42


def test_build_refuses_a_non_empty_destination(versions: dict, tmp_path: Path) -> None:
    (tmp_path / "x").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        build_dataset_version(
            versions["two_dir"] / "anon",
            plan_split(versions["two_dir"] / "anon", FRACTIONS, 1),
            tmp_path,
            validation=None,
            faces=None,  # type: ignore[arg-type]
            task=get_task("detect"),
        )
    assert (tmp_path / "x").read_text() == "keep me"


def test_materializer_round_trip(versions: dict, tmp_path: Path) -> None:
    from visionops.app.materializers import DatasetVersionMaterializer

    original = versions["one"]
    copy_source = tmp_path / "src"
    from visionops.core.files import copy_tree

    copy_tree(original.root, copy_source)
    materializer = DatasetVersionMaterializer(uri=str(tmp_path / "artifact"))
    saved = DatasetVersion(copy_source)
    materializer.save(saved)
    assert copy_source.is_dir()  # not the step's scratch folder: left alone
    loaded = DatasetVersionMaterializer(uri=str(tmp_path / "artifact")).load(
        DatasetVersion
    )
    assert loaded.hash == original.hash == content_hash(loaded.root, HASHED)
    assert materializer.extract_metadata(loaded)["dataset_hash"] == original.hash
