"""A fourth task is one folder and one registry line, nothing else.

The toy `count` task (`tests/plugins/count_task/`) counts the objects the
detector finds. Registered by one line in `visionops.tasks.REGISTRY`
(`tests/plugin_tasks.py`), it goes through ingestion, the dataset card, the
service (`/info`, its endpoint, its view on the web page) and batch inference
with its own layout, endpoint, view and batch outputs, and no change to the
project.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections import Counter
from pathlib import Path

import cv2
import pytest

from tests.plugin_tasks import PLUGINS, registered
from tests.servers import free_port
from visionops import tasks
from visionops.batch.predict import predict_folder
from visionops.batch.report import write_report
from visionops.config import BatchSettings, load_parameters
from visionops.data.anonymize import FaceReport
from visionops.data.manifest import Manifest
from visionops.data.report import dataset_html
from visionops.data.sources import stage_source
from visionops.data.split import plan_split
from visionops.data.validate import ValidationSettings, validate_dataset
from visionops.data.version import DatasetVersion, build_dataset_version, content_hash
from visionops.engine.task import Task

# `counter`: the service of a count model; `page`: a headless Chromium page
pytest_plugins = ["tests.serving_app", "tests.browser"]
FOLDER = PLUGINS / "count_task"
LOW_CONF = 0.001  # the 2-epoch model scores low; this keeps some boxes
SLIDER_CONF = "0.01"  # the web page's lowest confidence


@pytest.fixture
def count_task():
    """The toy `count` task, registered by one REGISTRY line."""
    with registered("count") as task:
        yield task


def _ingest(task: Task, export: Path, work: Path) -> tuple[DatasetVersion, Manifest]:
    """The ingestion pipeline's library calls; returns the version and what
    validation accepted (the labels the counts are made from)."""
    params = load_parameters("ingestion", overrides=["task=count"])
    manifest = stage_source(
        export, work / "staged", tasks=tasks.ingestion_tasks(params.task)
    )
    assert manifest.task == "count"
    report = validate_dataset(
        work / "staged", work / "valid", ValidationSettings(), task=task
    )
    plan = plan_split(work / "valid", {"train": 0.6, "val": 0.2, "test": 0.2}, 0)
    version = build_dataset_version(
        work / "valid",
        plan,
        work / "dataset",
        validation=report,
        faces=FaceReport(images=0, images_with_faces=0, faces=0),
        task=task,
    )
    return version, Manifest.read(work / "valid")


def test_a_fourth_task_folder_runs_from_ingestion_to_batch(
    count_task, counter, onnx_path: Path, sample_dir: Path, tmp_path: Path
) -> None:
    # Ingestion: a YOLO box export, kept in the task's own layout (counts).
    version, valid = _ingest(count_task, sample_dir, tmp_path)
    card = version.card
    assert version.task == "count" and card["accepted"] == len(valid.items) > 10
    assert sorted(p.name for p in version.root.iterdir()) == [
        "classes.txt",
        "counts",
        "dataset_card.json",
        "manifest.json",
        "test",
        "train",
        "val",
    ]
    assert card["hash"] == content_hash(
        version.root, ("train", "val", "test", "counts", "classes.txt")
    )
    images = {s: count_task.split_images(version, s) for s in ("train", "val", "test")}
    assert sum(map(len, images.values())) == card["accepted"]
    staged = tmp_path / "valid"
    for item in valid.items:
        lines = (staged / item.label).read_text().split("\n") if item.label else []
        boxes = Counter(valid.class_names[int(ln.split()[0])] for ln in lines if ln)
        (placed,) = [p for s in images.values() for p in s if p.stem == item.id]
        assert count_task.layout.read_counts(version.root, placed) == dict(boxes)
    for split, placed in images.items():
        objects = sum(
            sum(count_task.layout.read_counts(version.root, p).values()) for p in placed
        )
        assert sum(card["splits"][split]["objects_per_class"].values()) == objects

    # The dataset card: the task's per-class count, thumbnails of its images.
    page = dataset_html(version, count_task)
    assert "Objects per class" in page and "<th>objects</th>" in page
    assert page.count("<figure>") >= 3

    # The service: `/info` names the task, its endpoint and its view, and the
    # web page's views are those of the tasks the service serves.
    from visionops.serving.endpoints import served_tasks

    info = counter.post("/info", json={}).json()
    assert info["task"] == "count" and info["endpoint"] == "/count"
    assert info["view"] == "/ui/views/count.js"
    served = {task.name: task for task in served_tasks()}
    assert "count" in served and served["count"].serving().view == FOLDER / "view.js"
    for name, task in served.items():
        view = counter.get(f"/ui/views/{name}.js")
        assert view.status_code == 200, name
        assert view.text == task.serving().view.read_text()
    assert counter.get("/ui/views/tag.js").status_code == 404

    # Batch: the task's own CSV columns and summary, no detection label files.
    folder = tmp_path / "inputs"
    folder.mkdir()
    for path in images["test"][:3]:
        shutil.copy(path, folder / path.name)
    (folder / "notes.jpg").write_text("not an image")
    settings = BatchSettings(conf=LOW_CONF, threads=1, device="cpu", grid_size=4)
    run = predict_folder(
        folder, onnx_path, tmp_path / "batch", settings, task=count_task, progress=False
    )
    detector = count_task.predictor(onnx_path)
    expected = {
        p.name: detector.predict(cv2.imread(str(p)), conf=LOW_CONF)
        for p in sorted(folder.glob("*.jpg"))
        if p.name != "notes.jpg"
    }
    with (run.root / "predictions.csv").open() as table:
        rows = list(csv.reader(table))
    assert rows[0] == ["image", "objects"]
    assert {r[0]: int(r[1]) for r in rows[1:]} == {
        name: len(p.boxes) for name, p in expected.items()
    }
    summary = run.summary
    assert summary["task"] == "count" and summary["thresholds"] == {"conf": LOW_CONF}
    assert summary["predicted"] == 3 and summary["bad"] == 1
    assert summary["objects"] == sum(len(p.boxes) for p in expected.values()) > 0
    assert summary["per_class"] == {"board": summary["objects"]}
    document = json.loads((run.root / "predictions.json").read_text())
    assert [r["counts"] for r in document["images"]] == [
        p.counts(detector.names) for p in expected.values()
    ]
    assert not (run.root / "labels").exists() and run.grid is not None
    report = write_report(run)
    assert "Objects per class" in report and "most in one image" in report


@pytest.fixture
def counter_url(counter):
    """The service's app of `counter`, served over loopback HTTP by uvicorn (the
    browser's uploads reach it whole, which routed requests do not carry)."""
    import threading

    import uvicorn

    # The app is already started (its model loaded) by the test client.
    config = uvicorn.Config(
        counter.app, host="127.0.0.1", port=free_port(), lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_web_page_shows_the_count_view(
    counter, counter_url: str, page, sample_dir: Path
) -> None:
    """The page in Chromium, served by the count model's service."""
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url.removeprefix(counter_url)))
    page.goto(f"{counter_url}/ui/")
    page.evaluate("window.visionops.ready")
    assert page.title() == "VisionOps counter"
    page.eval_on_selector(
        "#conf",
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }",
        SLIDER_CONF,
    )
    image = sorted(sample_dir.rglob("*.jpg"))[0]
    page.set_input_files("#file", str(image))
    page.wait_for_selector("#objects")
    upload = {"image": ("upload.jpg", image.read_bytes(), "image/jpeg")}
    objects = counter.post("/count", files=upload, data={"conf": SLIDER_CONF}).json()
    assert page.inner_text("#objects") == f"{objects['objects']} objects"
    assert page.evaluate("document.body.dataset.boxes") == str(objects["objects"])
    assert {"/info", "/ui/views/count.js", "/count"} <= set(asked)
