"""Batch on video: a clip made from the sample images, bad videos beside it."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from visionops.batch.predict import BAD_FILES_CSV, BatchSettings, predict_folder
from visionops.batch.report import write_report
from visionops.batch.video import TRACKS_CSV, VIDEO_CSV
from visionops.config import VideoSettings
from visionops.engine.onnx import export_onnx
from visionops.engine.tracks import Tracker
from visionops.tasks import get_task
from visionops.tasks.detect.onnx import OnnxDetector

IMGSZ = 128  # the size `tiny_weights` was trained at
SIZE = (160, 128)  # the clip's frames, width x height
# Frames 0-2 are the same image: their boxes, and so their tracks, must not move.
SEQUENCE = [0, 0, 0, 1, 2, 3, 3, 1]
# The tiny model is unsure of everything (confidences about 0.01): a tracker YAML
# of one's own, as Ultralytics takes it, with thresholds below that.
LOW_TRACKER = """tracker_type: bytetrack
track_high_thresh: 0.005
track_low_thresh: 0.001
new_track_thresh: 0.005
track_buffer: 30
match_thresh: 0.8
fuse_score: False
"""


@pytest.fixture(scope="module")
def onnx_path(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(tiny_weights, IMGSZ, tmp_path_factory.mktemp("video-onnx"))


def write_clip(path: Path, frames: list[np.ndarray], codec: str = "MJPG") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 10, SIZE)
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def decoded(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


@pytest.fixture(scope="module")
def folder(tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clip.avi (8 frames of 4 sample images, Motion JPEG: a repeated image decodes
    to the same pixels), one image, and five bad videos."""
    root = tmp_path_factory.mktemp("video-in")
    images = sorted((tiny_dataset.root / "images" / "test").iterdir())[:4]
    pictures = [cv2.resize(cv2.imread(str(p)), SIZE) for p in images]
    write_clip(root / "clip.avi", [pictures[i] for i in SEQUENCE])
    shutil.copy(images[0], root / images[0].name)
    mp4 = write_clip(root / "whole.mp4", pictures, "mp4v").read_bytes()
    (root / "cut.mp4").write_bytes(mp4[: len(mp4) * 6 // 10])
    (root / "whole.mp4").unlink()
    avi = (root / "clip.avi").read_bytes()
    (root / "codec.avi").write_bytes(avi.replace(b"MJPG", b"ZZZZ"))
    write_clip(root / "empty.avi", [])
    (root / "noise.mkv").write_bytes(np.random.default_rng(0).bytes(3000))
    big = np.zeros((1100, 1000, 3), np.uint8)
    cv2.imwrite(str(root / "big.jpg"), big)  # an image: its own limits
    writer = cv2.VideoWriter(
        str(root / "big.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1000, 1100)
    )
    writer.write(big)
    writer.release()
    return root


@pytest.fixture(scope="module")
def tracker_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tracker") / "low.yaml"
    path.write_text(LOW_TRACKER)
    return path


def settings(tracker: Path, **video) -> BatchSettings:
    return BatchSettings(
        conf=0.01,
        max_det=5,
        batch=3,
        threads=1,
        grid_size=2,
        video=VideoSettings(tracker=str(tracker), max_frame_pixels=1_000_000, **video),
    )


@pytest.fixture(scope="module")
def result(folder, onnx_path, tracker_yaml, tmp_path_factory):
    out = tmp_path_factory.mktemp("video-out") / "run"
    predictions = predict_folder(
        folder,
        onnx_path,
        out,
        settings(tracker_yaml),
        task=get_task("detect"),
        progress=False,
    )
    write_report(predictions)
    return predictions


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_rows_per_frame_are_the_image_predictions(result, folder, onnx_path) -> None:
    rows = rows_of(result.root / VIDEO_CSV)
    detector = OnnxDetector(onnx_path)
    frames = decoded(folder / "clip.avi")
    assert len(frames) == len(SEQUENCE)
    assert {r["video"] for r in rows} == {"clip.avi"}
    for index, frame in enumerate(frames):
        ours = detector.predict(frame, conf=0.01, iou=0.7, max_det=5)
        mine = [r for r in rows if int(r["frame"]) == index]
        assert len(mine) == len(ours) > 0, index
        assert {float(r["time_s"]) for r in mine} == {index / 10}
        assert [int(r["class_id"]) for r in mine] == ours.class_ids.tolist()
        np.testing.assert_allclose(
            [float(r["confidence"]) for r in mine], ours.scores, atol=1e-4
        )
        np.testing.assert_allclose(
            [[float(r[k]) for k in ("x1", "y1", "x2", "y2")] for r in mine],
            ours.boxes,
            atol=0.01,
        )


def test_a_repeated_frame_keeps_its_track_ids(result) -> None:
    rows = rows_of(result.root / VIDEO_CSV)
    ids = {f: [r["track_id"] for r in rows if int(r["frame"]) == f] for f in range(3)}
    # The tiny model's boxes all cover the whole frame, alike to the pixel: which
    # of them takes which id is arbitrary, that no id is lost or added is not.
    assert all(ids[0]) and sorted(ids[0]) == sorted(ids[1]) == sorted(ids[2])
    tracks = {r["track_id"]: r for r in rows_of(result.root / TRACKS_CSV)}
    for track in ids[0]:
        assert tracks[track]["first_frame"] == "0"
        assert int(tracks[track]["frames"]) >= 3


def test_tracks_follow_distinct_boxes() -> None:
    tracker = Tracker()  # Ultralytics' ByteTrack as configured by Ultralytics
    frame = np.zeros((200, 200, 3), np.uint8)
    boxes = np.array([[10, 10, 50, 50], [100, 100, 160, 180]], np.float32)
    seen = []
    for step in range(4):  # both move right, a few pixels a frame
        moved = boxes + np.array([3, 0, 3, 0], np.float32) * step
        seen.append(tracker.update(moved, np.array([0.9, 0.6]), np.zeros(2), frame))
    assert [ids.tolist() for ids in seen] == [[1, 2]] * 4
    # Swapped in the input, each box keeps its own id.
    swapped = tracker.update(moved[::-1], np.array([0.6, 0.9]), np.zeros(2), frame)
    assert swapped.tolist() == [2, 1]


def test_the_annotated_video_decodes_back(result) -> None:
    document = json.loads((result.root / "predictions.json").read_text())
    (video,) = document["videos"]
    assert video["frames_predicted"] == len(SEQUENCE)
    written = result.root / video["output"]
    assert written.suffix in (".mp4", ".avi")
    frames = decoded(written)
    assert len(frames) == len(SEQUENCE)
    assert frames[0].shape == (SIZE[1], SIZE[0], 3)
    assert (result.root / video["contact_sheet"]).is_file()
    summary = result.summary
    assert summary["predicted"] == 2  # the images beside the videos
    assert summary["videos"]["videos_in"] == 6
    assert summary["videos"]["predicted"] == 1 and summary["videos"]["bad"] == 5
    page = result.report.read_text()
    assert "clip.avi" in page and "<svg" in page


def test_bad_videos_have_reasons(result) -> None:
    bad = {r["file"]: r for r in rows_of(result.root / BAD_FILES_CSV)}
    assert {k: v["reason"] for k, v in bad.items()} == {
        "cut.mp4": "truncated",
        "codec.avi": "unsupported_codec",
        "empty.avi": "no_frames",
        "noise.mkv": "unreadable",
        "big.avi": "too_large",
    }
    assert "ZZZZ" in bad["codec.avi"]["detail"]
    assert "1000x1100" in bad["big.avi"]["detail"]


def test_a_single_video_at_a_lower_rate(folder, onnx_path, tracker_yaml, tmp_path):
    predictions = predict_folder(
        folder / "clip.avi",
        onnx_path,
        tmp_path / "run",
        settings(tracker_yaml, fps=5.0, blur_faces=False),
        task=get_task("detect"),
        progress=False,
    )
    rows = rows_of(predictions.root / VIDEO_CSV)
    assert sorted({int(r["frame"]) for r in rows}) == [0, 2, 4, 6]
    document = json.loads((predictions.root / "predictions.json").read_text())
    (video,) = document["videos"]
    assert (
        video["stride"] == 2 and len(decoded(predictions.root / video["output"])) == 4
    )
    assert predictions.summary["images_in"] == 0


def test_video_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="set one"):
        VideoSettings(fps=5, stride=2)
    with pytest.raises(ValueError, match="bytetrack or botsort"):
        VideoSettings(tracker="sort")


def test_classify_on_video_gives_the_top_class_per_frame(
    folder, cls_weights, tmp_path
) -> None:
    from visionops.tasks.classify.onnx import OnnxClassifier

    onnx = export_onnx(cls_weights, 64, tmp_path / "onnx")
    predictions = predict_folder(
        folder / "clip.avi",
        onnx,
        tmp_path / "run",
        BatchSettings(threads=1, video=VideoSettings(blur_faces=False)),
        task=get_task("classify"),
        progress=False,
    )
    rows = rows_of(predictions.root / VIDEO_CSV)
    classifier = OnnxClassifier(onnx)
    frames = decoded(folder / "clip.avi")
    assert [int(r["frame"]) for r in rows] == list(range(len(frames)))
    for row, frame in zip(rows, frames, strict=True):
        ours = classifier.predict(frame)
        assert int(row["class_id"]) == ours.class_id
        assert float(row["probability"]) == pytest.approx(
            float(ours.probabilities[ours.class_id]), abs=1e-5
        )
    assert "track_id" not in rows[0]
    assert rows_of(predictions.root / TRACKS_CSV) == []
    assert predictions.summary["videos"]["tracks"] == 0


def test_segment_on_video_tracks_its_instances(
    folder, seg_weights, tracker_yaml, tmp_path
) -> None:
    from tests.conftest import SEG_IMGSZ
    from visionops.tasks.segment.onnx import OnnxSegmenter

    onnx = export_onnx(seg_weights, SEG_IMGSZ, tmp_path / "onnx")
    predictions = predict_folder(
        folder / "clip.avi",
        onnx,
        tmp_path / "run",
        settings(tracker_yaml, blur_faces=False),
        task=get_task("segment"),
        progress=False,
    )
    rows = rows_of(predictions.root / VIDEO_CSV)
    segmenter = OnnxSegmenter(onnx)
    frames = decoded(folder / "clip.avi")
    for index, frame in enumerate(frames):
        ours = segmenter.predict(frame, conf=0.01, iou=0.7, max_det=5)
        mine = [r for r in rows if int(r["frame"]) == index]
        assert [int(r["class_id"]) for r in mine] == ours.class_ids.tolist()
    document = json.loads((predictions.root / "predictions.json").read_text())
    (video,) = document["videos"]
    assert len(decoded(predictions.root / video["output"])) == len(SEQUENCE)
    assert rows and all(r["track_id"] for r in rows if int(r["frame"]) == 0)
