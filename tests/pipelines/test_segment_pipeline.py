"""Segmentation through the shared training pipeline: train, evaluate, promote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_TRAINING
from visionops.tasks import get_task

REPO = Path(__file__).resolve().parents[2]

SHOES = REPO / "data" / "sample" / "shoe-soles"  # bundled Roboflow YOLO-seg export
CLASSES = ("shoes",)


def _test_images(dataset) -> list[Path]:
    """The test split of a dataset version, read with its task's layout."""
    return get_task(dataset.task).split_images(dataset, "test")


@pytest.fixture(scope="module")
def segmented() -> dict:
    """Local stack, the shoe-soles sample ingested with task=segment, one training."""
    from zenml.client import Client

    import run
    from tests.conftest import OUTBOUND

    assert run.main(["--stack", "local"]) == 0
    ingest = ["--pipeline", "ingestion", "--source", str(SHOES)]
    for override in ("task=segment", "anonymize.enabled=false"):
        ingest += ["--set", override]
    assert run.main(ingest) == 0
    OUTBOUND.clear()
    args = ["--pipeline", "training"]
    for override in [*TINY_TRAINING, "promotion.metric=miou"]:
        args += ["--set", override]
    assert run.main(args) == 0
    dataset = Client().get_artifact_version("dataset").load()
    return {
        "run": Client().get_pipeline("training").last_run,
        "dataset": dataset,
        "outbound": list(OUTBOUND),
    }


def test_segmenter_trained_evaluated_and_promoted_on_miou(segmented: dict) -> None:
    import mlflow

    from visionops.training.champion import Champion
    from visionops.training.tracking import configure_tracking

    run = segmented["run"]
    result = run.steps["train_candidate_0"].outputs["candidate_result"][0].load()
    assert result.model == "yolo11n-seg" and result.task.name == "segment"
    assert {"mask_map50_95", "box_map50_95"} <= set(result.val)
    evaluation = run.steps["evaluate_model"].outputs["test_evaluation"][0].load()
    assert evaluation.task == "segment"
    assert evaluation.images == len(_test_images(segmented["dataset"])) > 0
    assert evaluation.class_names == list(CLASSES)
    for key in ("mask_map50_95", "mask_map50", "box_map50_95", "box_map50"):
        assert 0 <= evaluation.metrics[key] <= 1
    # Every test image has a sole, so its IoU is defined and is the only class's.
    assert 0 <= evaluation.metrics["iou_shoes"] <= 1
    assert evaluation.metrics["miou"] == evaluation.metrics["iou_shoes"]
    assert 0 < evaluation.metrics["pixel_accuracy"] <= 1
    assert [row["class"] for row in evaluation.per_class] == list(CLASSES)
    assert len(evaluation.confusion_matrix) == len(CLASSES) + 1  # and background
    assert evaluation.latency_ms and evaluation.latency_ms > 0
    # Kept per image, the matches and pixel counts give back every metric.
    from visionops.tasks import get_task

    assert evaluation.per_image is not None
    assert len(evaluation.per_image.images) == evaluation.images
    everything = np.arange(evaluation.images)[None]
    for key in ("mask_map50_95", "box_map50", "miou", "pixel_accuracy"):
        recomputed = get_task("segment").resample_metric(
            evaluation.per_image, key, evaluation.class_names
        )(everything)[0]
        assert recomputed == pytest.approx(evaluation.metrics[key], abs=1e-9)
    html = Path(
        run.steps["evaluate_model"]
        .outputs["evaluation_report"][0]
        .visualizations[0]
        .uri
    ).read_text()
    assert "IoU per class" in html and "Pixel confusion matrix" in html

    configure_tracking()
    champion = Champion.get("image-segmenter")  # the segment default name
    assert champion.task == "segment" and champion.version == "1"
    assert champion.class_names == list(CLASSES)
    assert {"miou", "mask_map50_95", "iou_shoes"} <= set(champion.test_metrics)
    files = {
        f.path for f in mlflow.MlflowClient().list_artifacts(champion.run_id, "test")
    }
    assert {"test/class_iou.png", "test/pixel_confusion_matrix.png"} <= files
    decision = run.steps["promote_model"].outputs["promotion_decision"][0].load()
    assert decision.promote is True and decision.metric == "miou"
    assert segmented["outbound"] == []


def test_champion_onnx_segments_inside_the_image(
    segmented: dict, tmp_path: Path
) -> None:
    import cv2

    from visionops.training.champion import Champion

    champion = Champion.get("image-segmenter")
    predictor = champion.get_task().predictor(champion.fetch_onnx(tmp_path))
    assert [predictor.names[i] for i in sorted(predictor.names)] == list(CLASSES)
    image = cv2.imread(str(_test_images(segmented["dataset"])[0]))
    instances = predictor.predict(image, conf=0.0)
    height, width = image.shape[:2]
    assert instances.masks.shape[1:] == (height, width)
    records = instances.to_records(predictor.names)
    for record in records:
        assert record["class_name"] == "shoes"
        for x, y in record["polygon"]:
            assert 0 <= x <= width and 0 <= y <= height
    overlay = champion.get_task().render(image, instances, predictor.names)
    assert overlay.shape == image.shape


def test_status_shows_the_segmenter(segmented: dict, capsys) -> None:
    import run

    capsys.readouterr()
    assert run.main(["--status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["dataset"]["task"] == "segment"
    champion = status["champion"]
    assert champion["name"] == "image-segmenter" and champion["task"] == "segment"
    metrics = champion["test_metrics"]
    assert {"miou", "mask_map50_95", "pixel_accuracy"} <= set(metrics)
    assert [k for k in metrics if k.startswith("iou_")] == ["iou_shoes"]


def test_champion_rescored_on_the_same_split(segmented: dict) -> None:
    from zenml.client import Client

    import run

    args = ["--pipeline", "training"]
    for override in [*TINY_TRAINING, "promotion.metric=miou", "promotion.margin=1.0"]:
        args += ["--set", override]
    assert run.main(args) == 0
    second = Client().get_pipeline("training").last_run
    score = second.steps["evaluate_champion"].outputs["champion_evaluation"][0].load()
    assert score.champion.version == "1" and score.champion.task == "segment"
    challenger = second.steps["evaluate_model"].outputs["test_evaluation"][0].load()
    assert score.report.task == "segment"
    assert score.report.dataset_hash == challenger.dataset_hash
    assert score.report.images == challenger.images
    assert "miou" in score.report.metrics
    decision = second.steps["promote_model"].outputs["promotion_decision"][0].load()
    assert decision.promote is False and "does not beat champion v1" in decision.reason


def test_deployed_segmenter_serves_polygons_and_batches_masks(
    segmented: dict, capsys, tmp_path: Path
) -> None:
    """The issue's "done when": deployment of the segment champion, `/segment`
    polygons inside the image, and a mask PNG per image from the batch."""
    import csv

    import bentoml
    import cv2
    from starlette.testclient import TestClient

    import run
    from tests.serving_app import fresh_metrics, import_service

    assert run.main(["--pipeline", "deployment"]) == 0
    assert "Bento: image-segmenter:" in capsys.readouterr().out
    stored = bentoml.models.get("image-segmenter:latest")
    assert stored.info.metadata["task"] == "segment"

    module = import_service("image-segmenter")
    fresh_metrics()
    image = _test_images(segmented["dataset"])[0]
    height, width = cv2.imread(str(image)).shape[:2]
    with TestClient(module.VisionService.to_asgi()) as client:
        info = client.post("/info", json={}).json()
        assert info["task"] == "segment" and info["endpoint"] == "/segment"
        response = client.post(
            "/segment",
            files={"image": (image.name, image.read_bytes(), "image/jpeg")},
            data={"conf": "0.0"},  # a one-epoch model: show whatever it outlines
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["image"] == {"width": width, "height": height}
        for instance in body["instances"]:
            assert instance["class_name"] == "shoes"
            for x, y in instance["polygon"]:
                assert 0 <= x <= width and 0 <= y <= height
        assert set(body["class_pixels"]) <= set(CLASSES)

    out = tmp_path / "batch"
    source = SHOES / "test" / "images"
    args = ["--pipeline", "batch", "--source", str(source)]
    assert run.main([*args, "--set", f"output_dir={out}"]) == 0
    (where,) = out.iterdir()
    masks = sorted((where / "masks").iterdir())
    assert [m.stem for m in masks] == sorted(p.stem for p in source.iterdir())
    first = cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED)
    assert first.ndim == 2 and first.dtype.name == "uint8"
    with (where / "predictions.csv").open() as handle:
        assert next(csv.reader(handle))[:4] == [
            "image",
            "class_id",
            "class_name",
            "confidence",
        ]
    assert "Instances per class" in (where / "report.html").read_text()
