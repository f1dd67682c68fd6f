"""A classifier served and batch-predicted: `/classify` through `to_asgi()`
with a real tiny model, `/render` labels, another task's endpoint refused, and the
batch outputs of a classifier."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import CLS_IMGSZ, CLS_NAMES
from tests.serving_app import serving

MODEL = "test-serving-classifier"
LINEAGE = {
    "model_name": MODEL,
    "task": "classify",
    "class_names": list(CLS_NAMES.values()),
    "mlflow_version": "2",
    "serving_imgsz": CLS_IMGSZ,
    "test_metrics": {"top1": 0.75, "roc_auc": 0.8},
}


@pytest.fixture(scope="module")
def cls_onnx(cls_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from visionops.engine.onnx import export_onnx

    return export_onnx(cls_weights, CLS_IMGSZ, tmp_path_factory.mktemp("cls-serve"))


@pytest.fixture(scope="module")
def client(cls_onnx: Path, cls_weights: Path):
    with serving(MODEL, cls_onnx, cls_weights, LINEAGE) as c:
        yield c


@pytest.fixture(scope="module")
def xrays(classify_folder: Path) -> list[np.ndarray]:
    paths = sorted((classify_folder / "test").rglob("*.jpeg"))
    frames = [cv2.imread(str(p)) for p in paths]
    frames.append(cv2.resize(frames[0][:, :150], (300, 180)))  # landscape, odd size
    return frames


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def _post(client, path: str, image: np.ndarray, **fields):
    return client.post(
        path,
        files={"image": ("x.png", _png(image), "image/png")},
        data={k: str(v) for k, v in fields.items()},
    )


def test_classify_equals_onnx_classifier(client, cls_onnx: Path, xrays) -> None:
    from visionops.tasks.classify.onnx import OnnxClassifier

    reference = OnnxClassifier(cls_onnx)
    for frame in xrays:
        response = _post(client, "/classify", frame)
        assert response.status_code == 200, response.text
        body = response.json()
        predictions = body["predictions"]
        assert [set(p) for p in predictions] == [
            {"class_id", "class_name", "probability"}
        ] * 2
        probabilities = [p["probability"] for p in predictions]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        expected = reference.predict(frame).probabilities
        for p in predictions:
            assert p["class_name"] == CLS_NAMES[p["class_id"]]
            assert p["probability"] == pytest.approx(
                float(expected[p["class_id"]]), abs=1e-6
            )
        assert body["image"] == {"width": frame.shape[1], "height": frame.shape[0]}
        assert body["model"]["name"] == MODEL
        timing = body["timing_ms"]
        assert {"preprocess", "inference", "postprocess", "total"} <= set(timing)
        assert all(v >= 0 for v in timing.values())
        assert timing["total"] >= timing["inference"] > 0
    top = _post(client, "/classify", xrays[0], top_k=1).json()["predictions"]
    assert len(top) == 1
    assert top[0]["class_id"] == reference.predict(xrays[0]).class_id


def test_bad_top_k_and_other_tasks_endpoints_answer_4xx(client, xrays) -> None:
    response = _post(client, "/classify", xrays[0], top_k=0)
    assert response.status_code == 400 and "top_k" in response.json()["error"]
    for path, field in (("/detect", "image"), ("/detect_batch", "images")):
        response = client.post(
            path, files={field: ("x.png", _png(xrays[0]), "image/png")}
        )
        assert response.status_code == 404, path
        assert list(response.json()) == ["error"]
        message = response.json()["error"]
        assert "classify model" in message and "/classify" in message


def test_render_writes_the_top_class(client, xrays) -> None:
    from visionops.tasks.classify.onnx import Classification
    from visionops.tasks.classify.render import draw_classification

    frame = xrays[0]
    response = _post(client, "/render", frame)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    drawn = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    drawn = drawn[:, :, ::-1]
    assert drawn.shape == frame.shape
    assert not np.array_equal(drawn[:20, :60], frame[:20, :60])  # the label
    assert np.array_equal(drawn[-40:, -40:], frame[-40:, -40:])  # the rest intact
    body = _post(client, "/classify", frame).json()
    probabilities = np.zeros(len(CLS_NAMES), np.float32)
    for p in body["predictions"]:
        probabilities[p["class_id"]] = p["probability"]
    expected = draw_classification(frame, Classification(probabilities), CLS_NAMES)
    assert np.abs(drawn.astype(int) - expected).max() <= 1


def test_info_says_the_task(client) -> None:
    info = client.post("/info", json={}).json()
    assert info["task"] == "classify" and info["endpoint"] == "/classify"
    assert info["classes"] == {str(k): v for k, v in CLS_NAMES.items()}
    assert info["test_metrics"] == LINEAGE["test_metrics"]


def test_batch_writes_a_row_per_image_with_every_probability(
    classify_folder: Path, cls_onnx: Path, tmp_path: Path
) -> None:
    from visionops.batch.predict import (
        PREDICTIONS_CSV,
        PREDICTIONS_JSON,
        BatchSettings,
        predict_folder,
    )
    from visionops.batch.report import write_report
    from visionops.tasks import get_task
    from visionops.tasks.classify.onnx import OnnxClassifier

    folder = classify_folder / "test"
    settings = BatchSettings(batch=3, threads=1, grid_size=4)
    result = predict_folder(
        folder,
        cls_onnx,
        tmp_path / "out",
        settings,
        task=get_task("classify"),
        progress=False,
    )
    with (result.root / PREDICTIONS_CSV).open() as handle:
        rows = list(csv.DictReader(handle))
    images = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpeg"))
    assert sorted(r["image"] for r in rows) == images
    assert list(rows[0]) == [
        "image",
        "class_id",
        "class_name",
        "probability",
        "p_NORMAL",
        "p_PNEUMONIA",
    ]
    reference = OnnxClassifier(cls_onnx)
    for row in rows:
        expected = reference.predict(cv2.imread(str(folder / row["image"])))
        got = [float(row["p_NORMAL"]), float(row["p_PNEUMONIA"])]
        np.testing.assert_allclose(got, expected.probabilities, atol=1e-6)
        assert sum(got) == pytest.approx(1.0, abs=1e-5)
        assert int(row["class_id"]) == expected.class_id
        assert row["class_name"] == CLS_NAMES[expected.class_id]
    document = json.loads((result.root / PREDICTIONS_JSON).read_text())
    assert set(document["images"][0]["probabilities"]) == set(CLS_NAMES.values())
    summary = result.summary
    assert summary["task"] == "classify" and summary["predicted"] == len(images)
    assert sum(summary["images_per_class"].values()) == len(images)
    assert summary["thresholds"] == {}
    assert result.grid is not None and cv2.imread(str(result.grid)) is not None
    page = write_report(result)
    assert result.report.read_text() == page
    assert "Images per top class" in page and "conf" not in page.split("<table>")[0]
