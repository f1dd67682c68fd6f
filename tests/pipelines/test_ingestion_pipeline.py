"""A real ingestion pipeline run in an isolated ZenML store, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from visionops.config import load_parameters
from visionops.core.names import DATASET
from visionops.data.version import DatasetVersion, content_hash
from visionops.tasks import get_task

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ingested(sample_dir: Path) -> dict:
    """Runs ingestion once on the bundled sample, recording outbound traffic."""
    from zenml.client import Client

    from pipelines.ingestion import ingestion
    from tests.conftest import OUTBOUND

    OUTBOUND.clear()
    params = load_parameters(
        "ingestion", overrides=[f"source={sample_dir}", "workers=2"]
    )
    run = ingestion.with_options(enable_cache=False)(params=params)
    artifact = Client().get_artifact_version(DATASET)
    return {"run": run, "artifact": artifact, "outbound": list(OUTBOUND)}


def test_run_completes_offline(ingested: dict) -> None:
    assert str(ingested["run"].status) == "completed"
    assert ingested["outbound"] == [], "a pipeline step tried to leave loopback"


def test_dataset_artifact_adds_up(ingested: dict) -> None:
    version = ingested["artifact"].load()
    assert isinstance(version, DatasetVersion)
    card = version.card
    assert card["items_in"] == 61
    assert card["items_in"] == card["accepted"] + card["quarantined"]
    assert sum(s["images"] for s in card["splits"].values()) == card["accepted"]
    images_on_disk = sum(1 for _ in (version.root / "images").rglob("*.jpg"))
    assert images_on_disk == card["accepted"]
    assert card["hash"] == content_hash(version.root, get_task("detect").layout.HASHED)
    meta = ingested["artifact"].run_metadata
    assert meta["dataset_hash"] == card["hash"]
    assert meta["images"] == {s: v["images"] for s, v in card["splits"].items()}


def test_ultralytics_accepts_data_yaml(ingested: dict) -> None:
    from ultralytics.data.utils import check_det_dataset

    version = ingested["artifact"].load()
    text = version.data_yaml.read_text()
    assert "/" + "work" not in text and "path:" not in text  # no absolute paths
    data = check_det_dataset(str(version.data_yaml))
    assert data["nc"] == 1 and data["names"] == {0: "board"}
    assert Path(data["train"]).is_dir() and Path(data["test"]).is_dir()


def test_dashboard_visualisation(ingested: dict) -> None:
    visualizations = ingested["artifact"].visualizations
    assert visualizations, "the dataset artifact has no visualisation"
    html = Path(visualizations[0].uri).read_text()
    assert "Boxes per class" in html and "data:image/jpeg;base64," in html
    assert "Quarantine" in html


def test_status_reports_latest_dataset(
    ingested: dict, capsys: pytest.CaptureFixture
) -> None:
    import run

    assert run.main(["--status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["dataset"]["hash"] == ingested["artifact"].load().hash
    assert Path(status["dataset"]["path"]).is_dir()
    assert status["stack"]["name"] in ("default", "local")
    assert status["champion"] is None


def _run_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
        timeout=300,
    )


def test_help_shows_examples() -> None:
    result = _run_py("--help")
    assert result.returncode == 0
    assert "python run.py --pipeline ingestion --source" in result.stdout


def test_bad_config_fails_before_any_work() -> None:
    result = _run_py("--pipeline", "ingestion", "--set", "anonymize.treshold=0.3")
    assert result.returncode == 2
    assert "anonymize.treshold" in result.stderr and "threshold" in result.stderr
    assert "Traceback" not in result.stderr
    result = _run_py("--pipeline", "ingestion", "--source", "/nonexistent/export")
    assert result.returncode != 0
    assert "/nonexistent/export" in result.stderr


def test_classification_sample_through_the_pipeline() -> None:
    """The chest X-ray sample: task inferred, patients kept whole, classify layout."""
    from zenml.client import Client

    from pipelines.ingestion import ingestion
    from visionops.data.manifest import Manifest

    params = load_parameters(
        "ingestion",
        overrides=[
            f"source={REPO / 'data' / 'sample' / 'chest-xray'}",
            "workers=1",
            "anonymize.enabled=false",
            r"split.group_by=person\d+",
        ],
    )
    ingestion.with_options(enable_cache=False)(params=params)
    artifact = Client().get_artifact_version(DATASET)
    version = artifact.load()
    card = version.card
    assert artifact.run_metadata["task"] == "classify" == card["task"]
    assert card["items_in"] == card["accepted"] + card["quarantined"] == 83
    classify = get_task(version.task)
    assert classify.ultralytics_data(version) == version.root
    source_of = {i.id: Path(i.source).name for i in Manifest.read(version.root).items}
    patients: dict[str, set[str]] = {}
    for split in ("train", "val", "test"):
        images = classify.split_images(version, split)
        assert len(images) == card["splits"][split]["images"] > 0
        achieved, target = card["split"]["achieved"], card["split"]["fractions"]
        assert abs(achieved[split] - target[split]) <= 0.03
        assert set(card["splits"][split]["images_per_class"]) == {"NORMAL", "PNEUMONIA"}
        for image in images:
            name = source_of[image.stem]
            if name.startswith("person"):
                patients.setdefault(name.split("_")[0], set()).add(split)
    assert patients and all(len(s) == 1 for s in patients.values())


def test_segmentation_sample_through_the_pipeline(
    capsys: pytest.CaptureFixture,
) -> None:
    """The shoe-soles polygon export with task=segment: polygons kept, not boxes."""
    from zenml.client import Client

    import run
    from pipelines.ingestion import ingestion
    from visionops.data.manifest import Manifest

    sample = REPO / "data" / "sample" / "shoe-soles"
    params = load_parameters(
        "ingestion",
        overrides=[
            f"source={sample}",
            "task=segment",
            "workers=1",
            "anonymize.enabled=false",
        ],
    )
    ingestion.with_options(enable_cache=False)(params=params)
    artifact = Client().get_artifact_version(DATASET)
    version = artifact.load()
    card = version.card
    assert version.task == artifact.run_metadata["task"] == card["task"] == "segment"
    assert card["items_in"] == card["accepted"] + card["quarantined"] == 62
    assert card["fix_counts"].get("polygon_to_box", 0) == 0
    segment = get_task(version.task)
    source_of = {i.id: i.source for i in Manifest.read(version.root).items}
    instances = 0
    for split in ("train", "val", "test"):
        for image in segment.split_images(version, split):
            label = segment.layout.label_file(version.root, image)
            original = sample / source_of[image.stem]
            exported = original.parent.parent / "labels" / f"{original.stem}.txt"
            assert label.read_text() == exported.read_text()
            lines = label.read_text().splitlines()
            assert all(len(line.split()) >= 7 for line in lines)
            instances += len(lines)
    counted = card["splits"]
    assert sum(counted[s]["instances_per_class"]["shoes"] for s in counted) == (
        instances
    )
    html = Path(artifact.visualizations[0].uri).read_text()
    assert "Instances per class" in html
    capsys.readouterr()  # drop the pipeline's own output
    assert run.main(["--status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["dataset"]["task"] == "segment"
