"""Classification through the shared training pipeline: train, evaluate, promote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_TRAINING
from visionops.tasks import get_task

REPO = Path(__file__).resolve().parents[2]

XRAY = REPO / "data" / "sample" / "chest-xray"  # bundled, folder per class
CLASSES = ("NORMAL", "PNEUMONIA")


@pytest.fixture(scope="module")
def classified() -> dict:
    """Local stack, the X-ray sample ingested (task inferred), one tiny training."""
    from zenml.client import Client

    import run
    from tests.conftest import OUTBOUND

    assert run.main(["--stack", "local"]) == 0
    ingest = ["--pipeline", "ingestion", "--source", str(XRAY)]
    for override in ("anonymize.enabled=false", r"split.group_by=person\d+"):
        ingest += ["--set", override]
    assert run.main(ingest) == 0
    OUTBOUND.clear()
    args = ["--pipeline", "training"]
    for override in [*TINY_TRAINING, "train.imgsz=32", "grid={lr0: [0.01, 0.02]}"]:
        args += ["--set", override]
    assert run.main(args) == 0
    dataset = Client().get_artifact_version("dataset").load()
    return {
        "run": Client().get_pipeline("training").last_run,
        "test_images": len(get_task(dataset.task).split_images(dataset, "test")),
        "outbound": list(OUTBOUND),
    }


def test_classifier_trained_evaluated_and_promoted(classified: dict) -> None:
    import mlflow

    from visionops.training.champion import Champion
    from visionops.training.tracking import configure_tracking

    run = classified["run"]
    results = [
        run.steps[f"train_candidate_{i}"].outputs["candidate_result"][0].load()
        for i in (0, 1)
    ]
    assert [r.model for r in results] == ["yolo11n-cls", "yolo11n-cls"]
    assert all(r.task.name == "classify" and "top1" in r.val for r in results)
    evaluation = run.steps["evaluate_model"].outputs["test_evaluation"][0].load()
    assert evaluation.task == "classify"
    assert evaluation.images == classified["test_images"] > 0
    assert evaluation.class_names == list(CLASSES)
    assert 0 <= evaluation.metrics["top1"] <= 1
    assert "top5" not in evaluation.metrics  # fewer than 5 classes
    for key in ("roc_auc", "pr_auc", "sensitivity", "specificity", "macro_f1"):
        assert key in evaluation.metrics
    assert evaluation.metrics["sensitivity"] == evaluation.metrics["recall_PNEUMONIA"]
    assert evaluation.latency_ms and evaluation.latency_ms > 0
    # Kept per image, the probabilities give back every metric.
    from visionops.tasks import get_task

    assert evaluation.per_image is not None
    everything = np.arange(evaluation.images)[None]
    for key in ("top1", "macro_f1", "sensitivity"):
        recomputed = get_task("classify").resample_metric(
            evaluation.per_image, key, evaluation.class_names
        )(everything)[0]
        assert recomputed == pytest.approx(evaluation.metrics[key], abs=1e-9)

    configure_tracking()
    champion = Champion.get("image-classifier")  # the classify default name
    assert champion.task == "classify" and champion.version == "1"
    assert champion.class_names == list(CLASSES)
    assert {"top1", "roc_auc", "recall_PNEUMONIA"} <= set(champion.test_metrics)
    assert champion.onnx_artifact and champion.onnx_artifact.endswith(".onnx")
    # Quantized too: calibrated through the classifier's preprocessing, both scored.
    quantization = evaluation.quantization
    assert quantization is not None and quantization.metric == "top1"
    assert quantization.int8_score is not None and quantization.int8_latency_ms > 0
    assert champion.precision == quantization.precision
    files = {
        f.path for f in mlflow.MlflowClient().list_artifacts(champion.run_id, "test")
    }
    assert "test/confusion_matrix.png" in files
    assert "test/confusion_matrix_normalized.png" in files
    decision = run.steps["promote_model"].outputs["promotion_decision"][0].load()
    assert decision.promote is True and decision.metric == "top1"
    assert classified["outbound"] == []


def test_champion_onnx_is_the_evaluated_classifier(
    classified: dict, tmp_path: Path
) -> None:
    import cv2
    import numpy as np

    from visionops.training.champion import Champion

    champion = Champion.get("image-classifier")
    onnx = champion.fetch_onnx(tmp_path)
    predictor = champion.get_task().predictor(onnx)
    assert [predictor.names[i] for i in sorted(predictor.names)] == list(CLASSES)
    image = cv2.imread(str(sorted((XRAY / "NORMAL").iterdir())[0]))
    probabilities = predictor.predict(image).probabilities
    assert probabilities.shape == (2,)
    assert float(np.sum(probabilities)) == pytest.approx(1.0, abs=1e-4)


def test_status_shows_the_classifier(classified: dict, capsys) -> None:
    import run

    assert run.main(["--status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["dataset"]["task"] == "classify"
    champion = status["champion"]
    assert champion["name"] == "image-classifier" and champion["task"] == "classify"
    assert "top1" in champion["test_metrics"] and "roc_auc" in champion["test_metrics"]
    assert champion["precision"] in ("int8", "fp32")


def test_wrong_task_or_metric_fails_before_any_work(classified: dict, capsys) -> None:
    from mlflow.tracking import MlflowClient
    from zenml.client import Client

    import run

    client = MlflowClient()
    client.create_registered_model("some-detector")
    source = client.get_model_version("image-classifier", "1").source
    client.create_model_version("some-detector", source, tags={"task": "detect"})
    runs_before = len(Client().list_pipeline_runs(size=1000).items)
    train = ["--pipeline", "training", "--set"]
    assert run.main([*train, "model.name=some-detector"]) == 2
    err = capsys.readouterr().err
    assert "some-detector" in err and "detect" in err and "classify" in err
    assert run.main([*train, "promotion.metric=map50_95"]) == 2
    assert "promotion.metric" in capsys.readouterr().err
    assert run.main([*train, "models=[yolo11n-seg]"]) == 2
    assert "yolo11n-cls" in capsys.readouterr().err
    assert run.main([*train, "evaluation.positive_class=CAT"]) == 2
    assert "PNEUMONIA" in capsys.readouterr().err
    assert len(Client().list_pipeline_runs(size=1000).items) == runs_before


def test_champion_rescored_on_the_same_split(classified: dict) -> None:
    from zenml.client import Client

    import run

    args = ["--pipeline", "training"]
    for override in [*TINY_TRAINING, "train.imgsz=32", "promotion.margin=1.0"]:
        args += ["--set", override]
    assert run.main(args) == 0
    second = Client().get_pipeline("training").last_run
    score = second.steps["evaluate_champion"].outputs["champion_evaluation"][0].load()
    assert score.champion.version == "1" and score.champion.task == "classify"
    challenger = second.steps["evaluate_model"].outputs["test_evaluation"][0].load()
    assert score.report.task == "classify"
    assert score.report.dataset_hash == challenger.dataset_hash
    assert score.report.images == challenger.images == classified["test_images"]
    decision = second.steps["promote_model"].outputs["promotion_decision"][0].load()
    assert decision.promote is False and "does not beat champion v1" in decision.reason


def test_no_patient_group_crosses_splits(classified: dict) -> None:
    import re

    from zenml.client import Client

    dataset = Client().get_artifact_version("dataset").load()
    groups = {}
    for split in ("train", "val", "test"):
        # PNEUMONIA files are `personN_...`; a NORMAL `IM-...` file is its own group.
        names = [p.name for p in get_task(dataset.task).split_images(dataset, split)]
        found = [re.search(r"person\d+", name) for name in names]
        groups[split] = {m.group(0) for m in found if m}
        assert groups[split], names[:3]
    assert not groups["train"] & groups["val"]
    assert not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]


def test_deployed_classifier_serves_and_batches(
    classified: dict, capsys, tmp_path: Path
) -> None:
    """The issue's "done when": deployment of the classify champion, `/classify`
    summing to 1, batch rows with every class, and the reports in `--status`."""
    import csv

    import bentoml
    import cv2
    from starlette.testclient import TestClient

    import run
    from tests.serving_app import fresh_metrics, import_service

    assert run.main(["--pipeline", "deployment"]) == 0
    assert "Bento: image-classifier:" in capsys.readouterr().out
    stored = bentoml.models.get("image-classifier:latest")
    assert stored.info.metadata["task"] == "classify"

    module = import_service("image-classifier")
    fresh_metrics()
    image = sorted((XRAY / "PNEUMONIA").iterdir())[0]
    with TestClient(module.VisionService.to_asgi()) as client:
        info = client.post("/info", json={}).json()
        assert info["task"] == "classify" and info["mlflow_version"] == "1"
        response = client.post(
            "/classify", files={"image": (image.name, image.read_bytes(), "image/jpeg")}
        )
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert {p["class_name"] for p in predictions} == set(CLASSES)
        assert sum(p["probability"] for p in predictions) == pytest.approx(1, abs=1e-5)
        wrong = client.post(
            "/detect", files={"image": (image.name, image.read_bytes(), "image/jpeg")}
        )
        assert wrong.status_code == 404 and "/classify" in wrong.json()["error"]

    out = tmp_path / "batch"
    args = ["--pipeline", "batch", "--source", str(XRAY / "NORMAL")]
    assert run.main([*args, "--set", f"output_dir={out}"]) == 0
    (where,) = out.iterdir()
    with (where / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(list((XRAY / "NORMAL").iterdir()))
    assert list(rows[0])[-2:] == ["p_NORMAL", "p_PNEUMONIA"]
    first = cv2.imread(str(XRAY / "NORMAL" / rows[0]["image"]))
    assert first is not None
    assert float(rows[0]["p_NORMAL"]) + float(rows[0]["p_PNEUMONIA"]) == (
        pytest.approx(1, abs=1e-5)
    )
    assert "Images per top class" in (where / "report.html").read_text()

    capsys.readouterr()
    assert run.main(["--status", "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)["reports"]
    for key in ("dataset", "evaluation", "batch"):
        assert Path(reports[key]).is_file(), (key, reports[key])
    assert run.main(["--status"]) == 0
    text = capsys.readouterr().out
    assert f"batch: {reports['batch']}" in text
