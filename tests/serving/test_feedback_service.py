"""What the service records: one record per image on every endpoint, the images its
selection keeps (faces blurred, within the caps), and a broken store that never
fails a request. Through `to_asgi()`, a Bento's `feedback` argument set."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from tests.serving_app import LINEAGE, fresh_metrics, import_service
from visionops.data.anonymize import AnonymizeSettings, detect_faces
from visionops.feedback.store import FEATURES, STORE_ENV, FeedbackStore

pytest_plugins = ["tests.serving_app"]  # its tiny model's ONNX export
MODEL = "test-feedback-detector"
CAP = 3  # images the random slice may keep this hour
# What the deployment config would carry: keep every image (up to CAP an hour).
FEEDBACK = {
    "selection": {
        "random": {"fraction": 1.0, "per_hour": CAP, "per_day": 100},
        "confidence": {"enabled": False},
        "empty": {"enabled": False},
    }
}
RECORD_KEYS = {
    "id",
    "time",
    "source",
    "model",
    "task",
    "image",
    "summary",
    "latency_ms",
    "selected",
    "reasons",
}


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


@pytest.fixture(scope="module")
def served(onnx_path: Path, tiny_weights: Path, tmp_path_factory):
    """The client and the store folder the service records into."""
    from starlette.testclient import TestClient

    from visionops.serving.bento import save_model

    root = tmp_path_factory.mktemp("feedback") / "store"
    save_model(MODEL, onnx_path, tiny_weights, {**LINEAGE, "model_name": MODEL})
    module = import_service(MODEL, {"feedback": FEEDBACK})
    fresh_metrics()  # another module's app may hold BentoML's metrics
    patch = pytest.MonkeyPatch()
    patch.setenv(STORE_ENV, str(root))  # what the deployment sets
    with TestClient(module.VisionService.to_asgi(), raise_server_exceptions=False) as c:
        yield c, root
    patch.undo()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)


def _kept(root: Path, count: int) -> list:
    """The kept images, once the service's writer has written `count` (it blurs
    faces off the request path)."""
    deadline = time.monotonic() + 120
    while len(kept := FeedbackStore(root).selected()) < count:
        assert time.monotonic() < deadline, f"{len(kept)} of {count} kept images"
        time.sleep(0.2)
    return kept


def test_every_endpoint_records_each_image_and_keeps_within_the_cap(
    served, astronaut, tiny_dataset
) -> None:
    client, root = served
    boards = sorted((tiny_dataset.root / "images" / "test").iterdir())[:2]
    one = client.post(
        "/detect", files={"image": ("astronaut.png", _png(astronaut), "image/png")}
    )
    assert one.status_code == 200, one.text
    batch = client.post(
        "/detect_batch",
        files=[("images", (p.name, p.read_bytes(), "image/jpeg")) for p in boards]
        + [("images", ("broken.jpg", b"not an image", "image/jpeg"))],
    )
    assert batch.status_code == 200 and len(batch.json()) == 3
    drawn = client.post(
        "/render", files={"image": ("again.png", _png(astronaut), "image/png")}
    )
    assert drawn.status_code == 200

    records = list(FeedbackStore(root).records())
    # One per image answered; the unreadable one has none.
    assert [(r["source"], r["image"]["name"]) for r in records] == [
        ("service:/detect", "astronaut.png"),
        ("service:/detect_batch", boards[0].name),
        ("service:/detect_batch", boards[1].name),
        ("service:/render", "again.png"),
    ]
    height, width = astronaut.shape[:2]
    for record in records:
        assert set(record) == RECORD_KEYS
        assert record["task"] == "detect" and record["latency_ms"] > 0
        assert record["model"] == {
            "name": MODEL,
            "version": LINEAGE["mlflow_version"],
            "bento": f"{MODEL}:{record['model']['bento'].split(':')[1]}",
        }
        assert set(record["summary"]) == {"count", "classes", "confidences"}
    assert records[0]["image"] == {
        "name": "astronaut.png",
        "width": width,
        "height": height,
    }
    # The endpoint's own answer, summed up.
    assert records[0]["summary"]["count"] == len(one.json()["detections"])
    # The random slice keeps every image until its hourly cap.
    assert [r["selected"] for r in records] == [True] * CAP + [False]
    assert all(r["reasons"] == ["random"] for r in records[:CAP])

    kept = _kept(root, CAP)
    assert {k.id for k in kept} == {r["id"] for r in records[:CAP]}
    first = next(k for k in kept if k.id == records[0]["id"])
    assert first.predictions["detections"] == one.json()["detections"]
    stored = cv2.imread(str(first.image))
    assert stored.shape == astronaut.shape
    assert len(detect_faces(astronaut, AnonymizeSettings())) == 1
    assert len(detect_faces(stored, AnonymizeSettings())) == 0  # blurred

    # Each image's drift features, computed off the request path, by record id.
    deadline = time.monotonic() + 120
    while len(lines := list(FeedbackStore(root).records(kind=FEATURES))) < 4:
        assert time.monotonic() < deadline, f"{len(lines)} of 4 features lines"
        time.sleep(0.2)
    assert sorted(f["id"] for f in lines) == sorted(r["id"] for r in records)
    for line in lines:
        figures = line["features"]
        assert {"brightness", "sharpness", "confidence", "embedding"} <= set(figures)
        assert len(figures["embedding"]) > 32  # raw: a report projects it
    by_id = {f["id"]: f["features"] for f in lines}
    assert by_id[records[0]["id"]]["width"] == width

    info = client.post("/info", json={}).json()["feedback"]
    assert info["recording"] and info["store"] == str(root)
    assert (info["recorded"], info["selected"], info["failed"]) == (4, CAP, 0)
    assert (info["featured"], info["unfeatured"]) == (4, 0)
    # The classifier's margin policy stays on by default; it never picks boxes.
    assert info["policies"] == [f"random ({CAP}/h, 100/day)", "margin (10/h, 100/day)"]
    assert "face-blurred" in info["what"]


def test_an_unwritable_store_still_answers_and_counts(served, tiny_dataset) -> None:
    client, root = served
    before = client.post("/info", json={}).json()["feedback"]["failed"]
    records = root / "records"
    moved = root / "records-away"
    if records.exists():
        shutil.move(records, moved)
    records.write_text("a file where the records folder goes")
    try:
        image = sorted((tiny_dataset.root / "images" / "test").iterdir())[0]
        response = client.post(
            "/detect", files={"image": (image.name, image.read_bytes(), "image/jpeg")}
        )
        assert response.status_code == 200 and "detections" in response.json()
        info = client.post("/info", json={}).json()["feedback"]
        assert info["failed"] == before + 1
    finally:
        records.unlink()
        if moved.exists():
            shutil.move(moved, records)


def test_the_page_has_a_line_for_what_is_recorded(served) -> None:
    client, _ = served
    page = client.get("/ui/").text
    assert 'id="recorded"' in page and "kept.what" in page
