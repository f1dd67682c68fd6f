"""Review batches: what production selected, as a labelling batch per task."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.fakes.picsellia import FakeDatasetVersion, FakePicselliaClient
from visionops.data.sources import open_source, stage_source
from visionops.feedback.review import ReviewError, make_review_batch
from visionops.feedback.store import FeedbackStore, new_id
from visionops.tasks import get_task

REPO = Path(__file__).resolve().parents[2]
BOARDS = REPO / "data" / "sample" / "boards" / "train"
SOLES = REPO / "data" / "sample" / "shoe-soles" / "train"
XRAYS = REPO / "data" / "sample" / "chest-xray"
WHEN = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


def _keep(
    store: FeedbackStore,
    image: Path,
    task: str,
    predictions: dict,
    *,
    model: str = "board-detector",
    version: str = "3",
    reasons: tuple[str, ...] = ("near_threshold",),
    source: str = "service:/detect",
    offset: int = 0,
) -> str:
    """Keeps one selected image as the service does; returns its id."""
    width, height = Image.open(image).size
    record = {
        "id": new_id(),
        "time": (WHEN + timedelta(seconds=offset)).isoformat(),
        "source": source,
        "model": {"name": model, "version": version, "bento": f"{model}:abc"},
        "task": task,
        "image": {"name": image.name, "width": width, "height": height},
        "summary": {},
        "latency_ms": 4.2,
        "selected": True,
        "reasons": list(reasons),
    }
    store.keep_selected(record, predictions, image.read_bytes())
    return record["id"]


def _yolo_boxes(label: Path, size: tuple[int, int]) -> list[dict]:
    """A YOLO label file (boxes, or polygons as their boxes) as the detect
    endpoint's detections, in pixels."""
    width, height = size
    detections = []
    for n, (cls, cx, cy, w, h) in enumerate(_box_lines(label)):
        detections.append(
            {
                "class_id": int(cls),
                "class_name": "board",
                "confidence": 0.3 + 0.1 * n,
                "box": {
                    "x1": (cx - w / 2) * width,
                    "y1": (cy - h / 2) * height,
                    "x2": (cx + w / 2) * width,
                    "y2": (cy + h / 2) * height,
                },
            }
        )
    return detections


def _box_lines(label: Path) -> list[list[float]]:
    """`class cx cy w h` per line of a YOLO label, polygons taken as their box."""
    lines = []
    for line in label.read_text().splitlines():
        cls, *values = (float(v) for v in line.split())
        if len(values) > 4:
            xs, ys = values[::2], values[1::2]
            values = [
                (min(xs) + max(xs)) / 2,
                (min(ys) + max(ys)) / 2,
                max(xs) - min(xs),
                max(ys) - min(ys),
            ]
        lines.append([cls, *values])
    return lines


def _boards(n: int) -> list[tuple[Path, Path]]:
    images = sorted((BOARDS / "images").glob("*.jpg"))[:n]
    return [(i, BOARDS / "labels" / f"{i.stem}.txt") for i in images]


def _batch(store: FeedbackStore, tmp_path: Path, **kwargs):
    settings = {
        "model": None,
        "max_images": 500,
        "lookup": lambda name, version: ["board"],
        "when": WHEN,
    }
    return make_review_batch(store, str(tmp_path / "review"), **{**settings, **kwargs})


def _rows(folder: Path) -> list[dict]:
    with (folder / "review.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_detect_batch_is_yolo_with_the_predictions_as_labels(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "store")
    ids = {}
    for n, (image, label) in enumerate(_boards(3)):
        answer = {"detections": _yolo_boxes(label, Image.open(image).size)}
        ids[_keep(store, image, "detect", answer, offset=n)] = label
    batch = _batch(store, tmp_path)

    folder = Path(batch.target)
    assert folder.parent == tmp_path / "review" and folder.name == "20261206-093000"
    data = yaml.safe_load((folder / "data.yaml").read_text())
    assert data["names"] == {0: "board"} and data["nc"] == 1
    assert data["train"] == "train/images"
    assert (folder / "train" / "classes.txt").read_text() == "board\n"
    for record_id, original in ids.items():
        assert (folder / "train" / "images" / f"{record_id}.jpg").is_file()
        exported = (
            (folder / "train" / "labels" / f"{record_id}.txt").read_text().splitlines()
        )
        want = _box_lines(original)
        assert len(exported) == len(want) > 0
        for got, expected in zip(exported, want, strict=True):
            assert [float(v) for v in got.split()] == pytest.approx(expected, abs=2e-6)
    rows = _rows(folder)
    assert [r["image"] for r in rows] == [f"train/images/{i}.jpg" for i in ids]
    assert {r["source"] for r in rows} == {"service:/detect"}
    assert {r["reason"] for r in rows} == {"near_threshold"}
    assert rows[0]["confidence"] == "0.3000"  # the lowest box confidence
    assert {r["model_version"] for r in rows} == {"3"}
    assert batch.images == 3 and batch.reasons == {"near_threshold": 3}
    # Taken: the next review finds nothing, and says so without a folder.
    assert store.reviews()[0]["batch"] == str(folder)
    assert sorted(store.reviews()[0]["ids"]) == sorted(ids)
    again = _batch(store, tmp_path, when=WHEN + timedelta(hours=1))
    assert again.target is None and "Nothing selected" in again.summary()
    assert [p.name for p in (tmp_path / "review").iterdir()] == [folder.name]


def test_detect_batch_ingests_as_the_yolo_source(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "store")
    for n, (image, label) in enumerate(_boards(4)):
        answer = {"detections": _yolo_boxes(label, Image.open(image).size)}
        _keep(store, image, "detect", answer, offset=n)
    _keep(
        store,
        _boards(5)[4][0],
        "detect",
        {"detections": []},
        reasons=("empty",),
        offset=9,
    )
    folder = Path(_batch(store, tmp_path).target)

    assert open_source(folder).format == "yolo"
    manifest = stage_source(folder, tmp_path / "staged", tasks=[get_task("detect")])
    assert manifest.task == "detect" and manifest.class_names == ["board"]
    assert len(manifest.items) == 5
    labelled = [i for i in manifest.items if i.label]
    assert len(labelled) == 5  # the empty answer is an empty label file
    assert (folder / "train" / "labels").joinpath(
        Path(_rows(folder)[-1]["image"]).stem + ".txt"
    ).read_text() == ""


def test_segment_batch_keeps_the_outlines_and_ingests_as_segment(
    tmp_path: Path,
) -> None:
    store = FeedbackStore(tmp_path / "store")
    images = sorted((SOLES / "images").glob("*.jpg"))[:3]
    originals = {}
    for n, image in enumerate(images):
        width, height = Image.open(image).size
        label = SOLES / "labels" / f"{image.stem}.txt"
        instances = []
        for line in label.read_text().splitlines():
            values = [float(v) for v in line.split()[1:]]
            points = [
                [x * width, y * height]
                for x, y in zip(values[::2], values[1::2], strict=True)
            ]
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            instances.append(
                {
                    "class_id": 0,
                    "class_name": "shoes",
                    "confidence": 0.55,
                    "box": {"x1": min(xs), "y1": min(ys), "x2": max(xs), "y2": max(ys)},
                    "polygon": points,
                }
            )
        answer = {"instances": instances, "class_pixels": {"shoes": 1000}}
        record_id = _keep(
            store,
            image,
            "segment",
            answer,
            model="sole-segmenter",
            source="batch",
            reasons=("count", "random"),
            offset=n,
        )
        originals[record_id] = label
    batch = _batch(store, tmp_path, lookup=lambda name, version: ["shoes"])

    folder = Path(batch.target)
    assert yaml.safe_load((folder / "data.yaml").read_text())["names"] == {0: "shoes"}
    for record_id, label in originals.items():
        exported = (
            (folder / "train" / "labels" / f"{record_id}.txt").read_text().splitlines()
        )
        want = label.read_text().splitlines()
        assert len(exported) == len(want)
        for got, expected in zip(exported, want, strict=True):
            assert [float(v) for v in got.split()] == pytest.approx(
                [float(v) for v in expected.split()], abs=2e-6
            )
    assert {r["reason"] for r in _rows(folder)} == {"count;random"}
    assert batch.reasons == {"count": 3, "random": 3} and batch.task == "segment"
    manifest = stage_source(folder, tmp_path / "staged", tasks=[get_task("segment")])
    assert manifest.task == "segment" and len(manifest.items) == 3
    assert all(i.label for i in manifest.items)


def test_classify_batch_is_class_folders_and_ingests_as_such(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "store")
    names = ["NORMAL", "PNEUMONIA"]
    expected = {}
    for n, (truth, other) in enumerate([(0, 1), (1, 0), (1, 0), (0, 1)]):
        image = sorted((XRAYS / names[truth]).glob("*.jpeg"))[n]
        answer = {
            "predictions": [
                {"class_id": other, "class_name": names[other], "probability": 0.45},
                {"class_id": truth, "class_name": names[truth], "probability": 0.55},
            ]
        }
        record_id = _keep(
            store,
            image,
            "classify",
            answer,
            model="xray-classifier",
            reasons=("margin",),
            source="service:/classify",
            offset=n,
        )
        expected[record_id] = names[truth]
    batch = _batch(store, tmp_path, lookup=lambda name, version: names)

    folder = Path(batch.target)
    for record_id, name in expected.items():
        assert (folder / "train" / name / f"{record_id}.jpg").is_file()
    assert {r["confidence"] for r in _rows(folder)} == {"0.5500"}
    assert batch.class_names == names
    source = open_source(folder)
    assert source.format == "folders" or type(source).__name__ == "ClassFolderSource"
    manifest = stage_source(folder, tmp_path / "staged", tasks=[get_task("classify")])
    assert manifest.task == "classify" and manifest.class_names == names
    assert len(manifest.items) == 4


def test_class_names_come_from_the_newest_registered_version(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "store")
    (old, label), (new, _) = _boards(2)
    _keep(
        store, old, "detect", {"detections": _yolo_boxes(label, Image.open(old).size)}
    )
    screw = {
        "class_id": 0,
        "class_name": "screw",
        "confidence": 0.3,
        "box": {"x1": 1, "y1": 2, "x2": 30, "y2": 40},
    }
    screw_id = _keep(store, new, "detect", {"detections": [screw]}, version="10")
    registry = {"3": ["board"], "10": ["screw", "board"]}
    batch = _batch(store, tmp_path, lookup=lambda name, version: registry[version])
    folder = Path(batch.target)
    assert batch.class_names == ["screw", "board"]  # v10's order, not v3's
    names = yaml.safe_load((folder / "data.yaml").read_text())["names"]
    assert names == {0: "screw", 1: "board"}
    line = (folder / "train" / "labels" / f"{screw_id}.txt").read_text().split()
    assert line[0] == "0"


def test_class_names_without_the_registry_follow_the_answers_ids(
    tmp_path: Path,
) -> None:
    store = FeedbackStore(tmp_path / "store")
    (image, label), *_ = _boards(1)
    boxes = _yolo_boxes(label, Image.open(image).size)
    boxes.insert(0, {**boxes[0], "class_id": 2, "class_name": "screw"})
    record_id = _keep(store, image, "detect", {"detections": boxes})
    batch = _batch(store, tmp_path, lookup=lambda name, version: None)
    assert batch.class_names == ["board", "screw"]  # ids 0 and 2, in that order
    folder = Path(batch.target)
    ids = [
        line.split()[0]
        for line in (folder / "train" / "labels" / f"{record_id}.txt")
        .read_text()
        .splitlines()
    ]
    assert ids[0] == "1" and set(ids[1:]) == {"0"}


def test_review_csv_is_formula_safe(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "store")
    (image, _), *_ = _boards(1)
    _keep(store, image, "detect", {"detections": []}, source="=HYPERLINK(1)")
    folder = Path(_batch(store, tmp_path).target)
    assert _rows(folder)[0]["source"] == "'=HYPERLINK(1)"
    assert _rows(folder)[0]["confidence"] == ""


def test_max_images_takes_the_oldest_and_leaves_the_rest(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "store")
    kept = [
        _keep(store, image, "detect", {"detections": []}, offset=-n)
        for n, (image, _) in enumerate(_boards(3))
    ]
    batch = _batch(store, tmp_path, max_images=2)
    assert batch.images == 2 and batch.waiting == 1
    assert store.reviewed_ids() == set(kept[1:])  # the two oldest
    assert [s.id for s in store.selected(pending=True)] == [kept[0]]


def test_images_of_two_models_need_a_model_name(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "store")
    (a, _), (b, _) = _boards(2)
    _keep(store, a, "detect", {"detections": []})
    other = _keep(store, b, "detect", {"detections": []}, model="other-detector")
    with pytest.raises(ReviewError, match="board-detector \\(1\\), other-detector"):
        _batch(store, tmp_path)
    assert not (tmp_path / "review").exists()
    batch = _batch(store, tmp_path, model="other-detector")
    assert batch.images == 1 and store.reviewed_ids() == {other}


def test_a_malformed_sidecar_is_named_and_the_rest_goes_on(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "store")
    (a, _), (b, _), (c, _) = _boards(3)
    good = _keep(store, a, "detect", {"detections": []})
    bad = _keep(store, b, "detect", {"detections": []}, offset=1)
    broken = _keep(store, c, "detect", {"detections": []}, offset=2)
    (day,) = (tmp_path / "store" / "selected").iterdir()
    (day / f"{bad}.json").write_text('{"record": {"id": ')
    (day / f"{broken}.jpg").write_bytes(b"not a jpeg")

    batch = _batch(store, tmp_path)
    assert batch.images == 1 and store.reviewed_ids() == {good}
    assert len(batch.skipped) == 2
    assert batch.skipped[0].startswith(f"{day / bad}.json: JSONDecodeError")
    assert batch.skipped[1].startswith(f"{day / broken}.jpg: ")
    assert "2 file(s) skipped" in batch.summary()


def test_an_unreadable_day_folder_is_named_and_the_rest_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FeedbackStore(tmp_path / "store")
    (a, _), (b, _) = _boards(2)
    kept = _keep(store, a, "detect", {"detections": []})
    locked_day = tmp_path / "store" / "selected" / "2026-12-07"
    locked_day.mkdir(parents=True)
    (locked_day / "x.json").write_text("{}")
    real_glob = Path.glob

    def glob(self: Path, pattern: str):  # as a folder without read permission
        if self == locked_day:
            raise PermissionError(13, "Permission denied", str(self))
        return real_glob(self, pattern)

    monkeypatch.setattr(Path, "glob", glob)
    batch = _batch(store, tmp_path)
    assert batch.images == 1 and store.reviewed_ids() == {kept}
    assert batch.skipped == [
        f"{locked_day}: PermissionError: [Errno 13] Permission denied: '{locked_day}'"
    ]


def test_a_batch_that_fails_half_way_leaves_nothing_and_marks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from visionops.tasks.detect.review import DetectReview

    store = FeedbackStore(tmp_path / "store")
    for n, (image, _) in enumerate(_boards(2)):
        _keep(store, image, "detect", {"detections": []}, offset=n)

    def full_disk(self: DetectReview) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(DetectReview, "finish", full_disk)
    with pytest.raises(OSError, match="No space left"):
        _batch(store, tmp_path)
    assert list((tmp_path / "review").iterdir()) == []
    assert store.reviews() == [] and len(store.selected(pending=True)) == 2


def test_picsellia_target_uploads_tags_and_pre_annotations(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "store")
    (a, label), (b, _) = _boards(2)
    boxes = _yolo_boxes(label, Image.open(a).size)
    first = _keep(store, a, "detect", {"detections": boxes})
    second = _keep(store, b, "detect", {"detections": []}, reasons=("empty",), offset=1)
    version = FakeDatasetVersion(id="v-1", dataset="boards", version="review", files={})
    client = FakePicselliaClient([version])

    batch = make_review_batch(
        store,
        "picsellia://boards/review",
        model=None,
        max_images=10,
        lookup=lambda name, version: ["board"],
        when=WHEN,
        picsellia_client=client,
    )

    assert batch.target == "picsellia://boards/review" and batch.images == 2
    lake = client.datalake
    assert sorted(lake.uploads, key=lambda u: u["tags"]) == [
        {
            "filepaths": [
                str(store.root / "selected" / "2026-12-06" / f"{second}.jpg")
            ],
            "tags": ["visionops-review", "empty"],
        },
        {
            "filepaths": [str(store.root / "selected" / "2026-12-06" / f"{first}.jpg")],
            "tags": ["visionops-review", "near_threshold"],
        },
    ]
    assert {tuple(names): tuple(tags) for names, tags in version.added} == {
        (f"{first}.jpg",): ("visionops-review", "near_threshold"),
        (f"{second}.jpg",): ("visionops-review", "empty"),
    }
    assert version.labels == ["board"]
    annotated = version.assets_by_name[f"{first}.jpg"].annotations
    assert len(annotated) == 1
    rectangles = annotated[0].rectangles
    assert len(rectangles) == len(boxes)
    for (x, y, w, h, label_name), box in zip(rectangles, boxes, strict=True):
        assert label_name == "board"
        assert (x, y) == (round(box["box"]["x1"]), round(box["box"]["y1"]))
        assert x + w == round(box["box"]["x2"]) and y + h == round(box["box"]["y2"])
        assert all(isinstance(v, int) for v in (x, y, w, h))
    assert (
        version.assets_by_name[f"{second}.jpg"].annotations == []
    )  # nothing to pre-label
    assert store.reviewed_ids() == {first, second}
    assert store.reviews()[0]["batch"] == "picsellia://boards/review"


def test_picsellia_pre_annotations_of_segment_and_classify(tmp_path: Path) -> None:
    soles, xrays = FeedbackStore(tmp_path / "soles"), FeedbackStore(tmp_path / "xr")
    image = sorted((SOLES / "images").glob("*.jpg"))[0]
    outline = [[10.4, 12.6], [80.0, 15.2], [60.5, 90.9]]
    instance = {
        "class_id": 0,
        "class_name": "shoes",
        "confidence": 0.4,
        "box": {"x1": 10.4, "y1": 12.6, "x2": 80.0, "y2": 90.9},
        "polygon": outline,
    }
    shoe = _keep(soles, image, "segment", {"instances": [instance]}, model="soles")
    xray = sorted((XRAYS / "NORMAL").glob("*.jpeg"))[0]
    answer = {
        "predictions": [
            {"class_id": 1, "class_name": "PNEUMONIA", "probability": 0.48},
            {"class_id": 0, "class_name": "NORMAL", "probability": 0.52},
        ]
    }
    normal = _keep(xrays, xray, "classify", answer, model="xray", reasons=("margin",))
    version = FakeDatasetVersion(id="v-2", dataset="mixed", version="1", files={})
    client = FakePicselliaClient([version])
    for store, names in ((soles, ["shoes"]), (xrays, ["NORMAL", "PNEUMONIA"])):
        make_review_batch(
            store,
            "picsellia://v-2",
            model=None,
            max_images=10,
            lookup=lambda name, version, names=names: names,
            when=WHEN,
            picsellia_client=client,
        )

    (shoe_annotation,) = version.assets_by_name[f"{shoe}.jpg"].annotations
    assert shoe_annotation.polygons == [([[10, 13], [80, 15], [60, 91]], "shoes")]
    assert shoe_annotation.rectangles == []
    (xray_annotation,) = version.assets_by_name[f"{normal}.jpg"].annotations
    assert xray_annotation.classifications == ["NORMAL"]
    assert version.labels == ["shoes", "NORMAL", "PNEUMONIA"]


def test_picsellia_upload_that_drops_an_image_marks_nothing(tmp_path: Path) -> None:
    from visionops.feedback.picsellia import UploadError

    store = FeedbackStore(tmp_path / "store")
    (a, _), (b, _) = _boards(2)
    _keep(store, a, "detect", {"detections": []})
    dropped = _keep(store, b, "detect", {"detections": []}, offset=1)
    version = FakeDatasetVersion(id="v-3", dataset="boards", version="2", files={})
    client = FakePicselliaClient([version])
    client.datalake.failing = {f"{dropped}.jpg"}
    with pytest.raises(UploadError, match=f"1 of 2 image.*{dropped}.jpg"):
        make_review_batch(
            store,
            "picsellia://boards/2",
            model=None,
            max_images=10,
            lookup=lambda name, version: ["board"],
            when=WHEN,
            picsellia_client=client,
        )
    assert version.added == [] and store.reviews() == []


def test_picsellia_version_that_does_not_exist_is_named(tmp_path: Path) -> None:
    from visionops.data.sources.base import SourceError

    store = FeedbackStore(tmp_path / "store")
    _keep(store, _boards(1)[0][0], "detect", {"detections": []})
    client = FakePicselliaClient([])
    with pytest.raises(SourceError, match="dataset 'boards' version 'nope'"):
        make_review_batch(
            store,
            "picsellia://boards/nope",
            model=None,
            max_images=10,
            lookup=lambda name, version: ["board"],
            when=WHEN,
            picsellia_client=client,
        )
    assert store.reviews() == [] and len(store.selected(pending=True)) == 1


def test_prelabels_read_the_endpoints_own_answers() -> None:
    """The answers `Task.answer` gives (what the service and batch store) read
    as pre-labels; the segment answer is checked against its response model."""
    import numpy as np

    from visionops.tasks.classify.onnx import Classification
    from visionops.tasks.detect.onnx import Detections

    detect, classify, segment = (get_task(t) for t in ("detect", "classify", "segment"))
    boxes = Detections(
        boxes=np.array([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 5.0, 5.0]]),
        scores=np.array([0.9, 0.26]),
        class_ids=np.array([1, 0]),
    )
    answer = detect.answer(boxes, {0: "board", 1: "screw"})
    (screw, board) = detect.prelabels(answer)
    assert (screw.class_name, screw.class_id, screw.box) == (
        "screw",
        1,
        (10.0, 20.0, 50.0, 80.0),
    )
    assert board.confidence == pytest.approx(0.26) and board.polygon is None

    probabilities = Classification(np.array([0.2, 0.7, 0.1], dtype=np.float32))
    answer = classify.answer(probabilities, ["a", "b", "c"], top_k=3)
    (top,) = classify.prelabels(answer)
    assert (top.class_name, top.class_id) == ("b", 1)
    assert top.confidence == pytest.approx(0.7) and top.box is None

    instance = {
        "class_id": 0,
        "class_name": "shoes",
        "confidence": 0.5,
        "box": {"x1": 1.0, "y1": 2.0, "x2": 9.0, "y2": 8.0},
        "polygon": [[1.0, 2.0], [9.0, 2.0], [5.0, 8.0]],
    }
    answer = {"instances": [instance], "class_pixels": {"shoes": 30}}
    segment.serving().response.model_validate(answer)
    (outline,) = segment.prelabels(answer)
    assert outline.polygon == ((1.0, 2.0), (9.0, 2.0), (5.0, 8.0))


def test_an_image_predicted_twice_goes_into_the_batch_once(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "store")
    (image, _), (other, _) = _boards(2)
    first = _keep(store, image, "detect", {"detections": []})
    again = _keep(store, image, "detect", {"detections": []}, offset=1)
    second = _keep(store, other, "detect", {"detections": []}, offset=2)
    batch = _batch(store, tmp_path)
    assert batch.images == 2 and batch.duplicates == 1
    assert "1 copies of images already in the batch left out." in batch.summary()
    names = {p.stem for p in (Path(batch.target) / "train" / "images").iterdir()}
    assert names == {first, second}
    # The copy went with the batch: nothing waits for the next one.
    assert store.reviewed_ids() == {first, again, second}
    assert store.selected(pending=True) == []
