"""A segmenter served and batch-predicted: `/segment` through `to_asgi()` with a
real tiny model, the `/render` overlay, and the batch's mask PNGs."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import SEG_IMGSZ, SEG_NAMES, SHOE_SOLES
from tests.serving_app import serving

MODEL = "test-serving-segmenter"
CONF = 0.001  # a one-epoch model is unsure of everything
LINEAGE = {
    "model_name": MODEL,
    "task": "segment",
    "class_names": list(SEG_NAMES.values()),
    "mlflow_version": "1",
    "serving_imgsz": SEG_IMGSZ,
    "test_metrics": {"miou": 0.5, "mask_map50_95": 0.2},
}


@pytest.fixture(scope="module")
def seg_onnx(seg_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from visionops.engine.onnx import export_onnx

    return export_onnx(seg_weights, SEG_IMGSZ, tmp_path_factory.mktemp("seg-onnx"))


@pytest.fixture(scope="module")
def client(seg_onnx: Path, seg_weights: Path):
    with serving(MODEL, seg_onnx, seg_weights, LINEAGE) as c:
        yield c


@pytest.fixture(scope="module")
def soles() -> list[np.ndarray]:
    frames = [
        cv2.imread(str(p)) for p in sorted((SHOE_SOLES / "test" / "images").iterdir())
    ]
    frames.append(cv2.resize(frames[0][:, :200], (150, 230)))  # portrait, odd size
    return frames


def _post(client, path: str, image: np.ndarray, **fields):
    ok, data = cv2.imencode(".png", image)
    assert ok
    return client.post(
        path,
        files={"image": ("x.png", data.tobytes(), "image/png")},
        data={k: str(v) for k, v in fields.items()},
    )


def test_segment_answers_instances_inside_the_image(client, seg_onnx, soles) -> None:
    from visionops.tasks.segment.onnx import OnnxSegmenter

    reference = OnnxSegmenter(seg_onnx)
    found = 0
    for frame in soles:
        response = _post(client, "/segment", frame, conf=CONF, max_det=20)
        assert response.status_code == 200, response.text
        body = response.json()
        height, width = frame.shape[:2]
        assert body["image"] == {"width": width, "height": height}
        expected = reference.predict(frame, conf=CONF, max_det=20)
        instances = body["instances"]
        assert len(instances) == len(expected)
        for instance in instances:
            assert set(instance) == {
                "class_id",
                "class_name",
                "confidence",
                "box",
                "polygon",
                "track_id",
            }
            assert instance["track_id"] is None  # no `track` session asked
            assert instance["class_name"] == SEG_NAMES[instance["class_id"]]
            assert len(instance["polygon"]) >= 1
            for x, y in instance["polygon"]:
                assert 0 <= x <= width and 0 <= y <= height
            box = instance["box"]
            assert 0 <= box["x1"] <= box["x2"] <= width
            assert 0 <= box["y1"] <= box["y2"] <= height
        assert body["class_pixels"] == expected.class_pixels(SEG_NAMES)
        assert sum(body["class_pixels"].values()) <= width * height
        timing = body["timing_ms"]
        assert {"preprocess", "inference", "postprocess", "total"} <= set(timing)
        assert all(v >= 0 for v in timing.values())
        assert timing["total"] >= timing["inference"] > 0
        found += len(instances)
    assert found > 0  # the tiny model does outline something


def test_render_overlays_masks_and_other_endpoints_answer_404(client, soles) -> None:
    from PIL import Image

    frame = soles[0]
    response = _post(client, "/render", frame, conf=CONF)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    drawn = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    assert drawn.shape == frame.shape
    assert not np.array_equal(drawn[:, :, ::-1], frame)  # masks and legend drawn
    for path in ("/detect", "/classify"):
        response = _post(client, path, frame)
        assert response.status_code == 404, path
        assert "/segment" in response.json()["error"]
    info = client.post("/info", json={}).json()
    assert info["task"] == "segment" and info["endpoint"] == "/segment"


def test_batch_writes_a_mask_png_per_image(
    seg_onnx: Path, soles, tmp_path: Path
) -> None:
    from visionops.batch.predict import (
        PREDICTIONS_CSV,
        PREDICTIONS_JSON,
        BatchSettings,
        predict_folder,
    )
    from visionops.batch.report import write_report
    from visionops.tasks import get_task

    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for i, frame in enumerate(soles[:3]):
        cv2.imwrite(str(folder / ("sub" if i else "") / f"sole{i}.jpg"), frame)
    shutil.copy(folder / "sole0.jpg", folder / "sole0.png")  # same stem, kept apart
    settings = BatchSettings(conf=CONF, batch=2, threads=1, grid_size=4)
    result = predict_folder(
        folder,
        seg_onnx,
        tmp_path / "out",
        settings,
        task=get_task("segment"),
        progress=False,
    )
    out = result.root
    masks = sorted(p.relative_to(out).as_posix() for p in (out / "masks").rglob("*"))
    assert masks == [
        "masks/sole0.jpg.png",
        "masks/sole0.png.png",
        "masks/sub",
        "masks/sub/sole1.png",
        "masks/sub/sole2.png",
    ]
    document = json.loads((out / PREDICTIONS_JSON).read_text())
    instances = 0
    for record in document["images"]:
        mask = cv2.imread(str(out / record["mask"]), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (record["height"], record["width"])
        assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) <= {0, 255}
        shoes = int((mask == 0).sum())
        assert record["class_pixels"] == ({"shoes": shoes} if shoes else {})
        for instance in record["instances"]:
            for x, y in instance["polygon"]:
                assert 0 <= x <= record["width"] and 0 <= y <= record["height"]
        instances += len(record["instances"])
    with (out / PREDICTIONS_CSV).open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == instances > 0
    assert list(rows[0]) == [
        "image",
        "class_id",
        "class_name",
        "confidence",
        "x1",
        "y1",
        "x2",
        "y2",
    ]
    summary = document["summary"]
    assert summary["task"] == "segment" and summary["instances"] == instances
    assert summary["per_class"] == {"shoes": instances}
    assert "Instances per class" in write_report(result)


def test_masks_past_the_budget_answer_413_naming_the_limit(client, soles) -> None:
    from visionops.tasks.segment.onnx import MAX_MASK_PIXELS

    large = cv2.resize(soles[0], (4000, 3000))  # 12 Mpx: 33 masks fit the budget
    response = _post(client, "/segment", large, conf=0, iou=1, max_det=1000)
    assert response.status_code == 413, response.text
    message = response.json()["error"]
    assert "on a 4000x3000 image" in message
    assert f"at most {MAX_MASK_PIXELS // 12_000_000} fit" in message
    assert "(MAX_MASK_PIXELS): raise conf, lower max_det" in message
    # With what the message asks for, the same image is answered.
    response = _post(client, "/segment", large, conf=CONF, max_det=20)
    assert response.status_code == 200, response.text
    assert response.json()["image"] == {"width": 4000, "height": 3000}
