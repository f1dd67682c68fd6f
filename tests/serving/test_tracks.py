"""Track ids in the service: a tracker per client session, bounded."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from visionops.serving.tracks import TrackSessions
from visionops.tasks.detect.onnx import Detections

pytest_plugins = ["tests.serving_app"]  # the app under test, one per session
FRAME = np.zeros((200, 200, 3), np.uint8)


def boxes(shift: float = 0.0) -> Detections:
    return Detections(
        np.array([[10, 10, 50, 50], [100, 100, 160, 180]], np.float32) + shift,
        np.array([0.9, 0.6], np.float32),
        np.zeros(2, np.int64),
    )


def test_a_session_keeps_its_ids_and_sessions_are_apart() -> None:
    sessions = TrackSessions()
    first = [sessions.update("a", boxes(2.0 * i), FRAME).tolist() for i in range(3)]
    assert first == [[1, 2]] * 3
    assert sessions.update("b", boxes(), FRAME).tolist() == [1, 2]  # its own ids
    assert sessions.update("a", boxes(6.0), FRAME).tolist() == [1, 2]


def test_sessions_are_bounded_in_number_and_idle_time() -> None:
    sessions = TrackSessions(max_sessions=2, ttl_s=60)
    for key in ("a", "b", "c"):
        sessions.update(key, boxes(), FRAME)
    assert len(sessions) == 2  # "a", the least recently used, went
    idle = TrackSessions(ttl_s=0.0)
    idle.update("a", boxes(), FRAME)
    idle.update("b", boxes(), FRAME)
    assert len(idle) == 1


def test_detect_takes_a_track_session(client, tiny_dataset) -> None:
    image = sorted((tiny_dataset.root / "images" / "test").iterdir())[0]
    _, png = cv2.imencode(".png", cv2.imread(str(image)))
    sent = {"image": ("f.png", png.tobytes(), "image/png")}
    for _ in range(2):
        response = client.post(
            "/detect", files=sent, data={"conf": "0.001", "track": "page1"}
        )
        assert response.status_code == 200, response.text
        detections = response.json()["detections"]
        # The tiny model's scores (~0.01) are under ByteTrack's thresholds: its
        # boxes are answered untracked.
        assert detections and all(d["track_id"] is None for d in detections)
    bad = client.post("/detect", files=sent, data={"track": "no spaces/slashes"})
    assert bad.status_code == 400 and "track" in bad.text


def test_without_the_trackers_track_answers_422(
    client, tiny_dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(*args, **kwargs):
        raise ImportError("No module named 'lap'", name="lap")

    monkeypatch.setattr(TrackSessions, "update", missing)
    image = sorted((tiny_dataset.root / "images" / "test").iterdir())[0]
    sent = {"image": ("f.jpg", image.read_bytes(), "image/jpeg")}
    response = client.post("/detect", files=sent, data={"track": "page2"})
    assert response.status_code == 422
    assert "lap" in response.json()["error"]
    assert client.post("/detect", files=sent).status_code == 200  # untracked: fine
