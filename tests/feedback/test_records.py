"""The recorder: one record per image, kept images face-blurred, failures counted."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from visionops.config import FeedbackSettings
from visionops.data.anonymize import AnonymizeSettings, detect_faces
from visionops.feedback.records import Recorder
from visionops.feedback.store import FeedbackStore
from visionops.tasks import get_task
from visionops.tasks.detect.onnx import Detections

NAMES = {0: "board"}
MODEL = {"name": "board-detector", "version": "3", "bento": "board-detector:abc"}
KEEP_ALL = {"selection": {"random": {"fraction": 1.0, "per_hour": 100}}}
ANSWER = {"detections": [], "counts": {}}


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)


def _nothing() -> Detections:
    return Detections.empty()


def _recorder(root: Path, **settings) -> Recorder:
    return Recorder(
        get_task("detect"),
        NAMES,
        MODEL,
        FeedbackSettings.model_validate(settings),
        FeedbackStore(root, source="service"),
        seed=0,
    )


def test_one_record_per_image_with_its_fields(tmp_path: Path) -> None:
    recorder = _recorder(tmp_path, selection={"empty": {"enabled": False}})
    frame = np.zeros((48, 64, 3), np.uint8)
    found = Detections(
        np.zeros((1, 4), np.float32), np.array([0.8], np.float32), np.zeros(1, np.int64)
    )
    for _ in range(3):
        recorder.record(
            "service:/detect",
            frame,
            found,
            name="a.jpg",
            latency_ms=3.14159,
            answer=ANSWER,
        )
    records = list(FeedbackStore(tmp_path).records())
    assert len(records) == 3 and len({r["id"] for r in records}) == 3
    first = records[0]
    assert first["source"] == "service:/detect" and first["task"] == "detect"
    assert first["model"] == MODEL
    assert first["image"] == {"name": "a.jpg", "width": 64, "height": 48}
    assert first["summary"] == {
        "count": 1,
        "classes": {"board": 1},
        "confidences": {"board": [0.8]},
    }
    assert first["latency_ms"] == 3.14
    assert (first["selected"], first["reasons"]) == (False, [])
    assert first["time"].endswith("+00:00")
    assert recorder.status()["recorded"] == 3


def test_a_kept_image_is_face_blurred(tmp_path: Path, astronaut: np.ndarray) -> None:
    assert len(detect_faces(astronaut, AnonymizeSettings())) == 1
    recorder = _recorder(tmp_path, **KEEP_ALL)
    record = recorder.record(
        "batch",
        astronaut,
        _nothing(),
        name="astronaut.png",
        latency_ms=1.0,
        answer=lambda: ANSWER,
    )
    recorder.close()
    assert record is not None and record["selected"]
    assert record["reasons"] == ["random", "empty"]
    (kept,) = FeedbackStore(tmp_path).selected()
    assert kept.id == record["id"] and kept.predictions == ANSWER
    stored = cv2.imread(str(kept.image))
    assert stored.shape == astronaut.shape
    assert len(detect_faces(stored, AnonymizeSettings())) == 0
    # The face (top of the image) changed; the rest is the photo, JPEG aside.
    x1, y1, x2, y2, _ = detect_faces(astronaut, AnonymizeSettings())[0].astype(int)
    face = np.abs(stored[y1:y2, x1:x2].astype(int) - astronaut[y1:y2, x1:x2])
    assert face.mean() > 10
    rest = np.abs(stored[400:].astype(int) - astronaut[400:])
    assert rest.mean() < 5
    assert recorder.status()["selected"] == 1


def test_an_unwritable_store_is_counted_not_raised(tmp_path: Path) -> None:
    (tmp_path / "records").write_text("a file where the records folder goes")
    recorder = _recorder(tmp_path)
    frame = np.zeros((8, 8, 3), np.uint8)
    for _ in range(2):
        assert (
            recorder.record(
                "batch", frame, _nothing(), name="x", latency_ms=1, answer=ANSWER
            )
            is None
        )
    status = recorder.status()
    assert (status["recorded"], status["failed"]) == (0, 2)


def test_a_full_queue_drops_the_image_not_the_record(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    recorder = _recorder(tmp_path, queue=1, **KEEP_ALL)
    records = [
        recorder.record(
            "batch",
            astronaut,
            _nothing(),
            name=f"{i}.png",
            latency_ms=1,
            answer=ANSWER,
        )
        for i in range(6)
    ]
    recorder.close()
    assert all(r is not None for r in records)
    dropped = [r for r in records if r.get("dropped")]
    kept = FeedbackStore(tmp_path).selected()
    assert dropped and all(not r["selected"] for r in dropped)
    assert len(kept) + len(dropped) == 6
    assert {k.id for k in kept} == {r["id"] for r in records if r["selected"]}
    status = recorder.status()
    assert (status["recorded"], status["dropped"]) == (6, len(dropped))


def test_recording_off_writes_nothing(tmp_path: Path) -> None:
    recorder = _recorder(tmp_path, record=False, **KEEP_ALL)
    frame = np.zeros((8, 8, 3), np.uint8)
    recorder.record("batch", frame, _nothing(), name="x", latency_ms=1, answer=ANSWER)
    assert not any(tmp_path.iterdir())


def test_status_counts_per_deployed_model(tmp_path: Path, astronaut) -> None:
    from visionops.app.status import _feedback_lines
    from visionops.feedback.records import counts_per_model

    store = FeedbackStore(tmp_path)
    recorder = _recorder(tmp_path, **KEEP_ALL)
    frame = np.zeros((8, 8, 3), np.uint8)
    ids = [
        recorder.record(
            "service:/detect", frame, _nothing(), name="x", latency_ms=1, answer=ANSWER
        )["id"]
        for _ in range(3)
    ]
    older = Recorder(
        get_task("detect"),
        NAMES,
        {**MODEL, "version": "2"},
        FeedbackSettings(),
        FeedbackStore(tmp_path, source="batch"),
        seed=0,
    )
    older.record(
        "batch",
        frame,
        Detections(
            np.zeros((1, 4), np.float32),
            np.array([0.9], np.float32),
            np.zeros(1, np.int64),
        ),
        name="y",
        latency_ms=1,
        answer=ANSWER,
    )
    recorder.close()
    store.mark_reviewed(ids[:1], "outputs/review/1")
    rows = {row["version"]: row for row in counts_per_model(store)}
    assert rows["3"]["recorded"] == 3 and rows["3"]["sources"] == {"service:/detect": 3}
    assert (rows["3"]["selected"], rows["3"]["waiting"]) == (3, 2)
    assert (rows["2"]["recorded"], rows["2"]["selected"]) == (1, 0)
    lines = _feedback_lines({"store": str(tmp_path), "models": [rows["3"]]})
    assert lines[1] == (
        "  board-detector v3: 3 predictions recorded (service:/detect 3), "
        "3 images selected, 2 waiting for review"
    )
