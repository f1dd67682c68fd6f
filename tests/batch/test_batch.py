"""Batch inference: the library on a messy folder, then one real pipeline run."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import TINY_TRAINING
from visionops.batch.predict import (
    BAD_FILES_CSV,
    PREDICTIONS_CSV,
    PREDICTIONS_JSON,
    SAMPLE_GRID,
    BatchSettings,
    PredictionSet,
    predict_folder,
)
from visionops.config import FeedbackSettings
from visionops.engine.onnx import export_onnx
from visionops.feedback.store import STORE_ENV, FeedbackStore
from visionops.tasks import get_task
from visionops.tasks.detect.onnx import OnnxDetector

IMGSZ = 128  # the size `tiny_weights` was trained at
SETTINGS = BatchSettings(conf=0.01, max_det=20, batch=3, threads=1, grid_size=4)
MODEL = "batch-detector"
TINY = [*TINY_TRAINING, f"model.name={MODEL}"]


@pytest.fixture(scope="module")
def onnx_path(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(tiny_weights, IMGSZ, tmp_path_factory.mktemp("batch-onnx"))


@pytest.fixture(scope="module")
def folder(tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 real images (one nested, two sharing a stem) and 4 bad files, plus noise."""
    root = tmp_path_factory.mktemp("batch-in")
    real = sorted((tiny_dataset.root / "images" / "test").iterdir())[:6]
    for path in real[:4]:
        shutil.copy(path, root / path.name)
    nested = root / "nested" / "deeper"
    nested.mkdir(parents=True)
    for path in real[4:]:
        shutil.copy(path, nested / path.name)
    first = cv2.imread(str(real[0]))
    cv2.imwrite(str(root / f"{real[0].stem}.png"), first)  # same stem as a .jpg
    data = real[1].read_bytes()
    (root / "cut.jpg").write_bytes(data[: len(data) // 2])
    (root / "noise.png").write_bytes(np.random.default_rng(0).bytes(2000))
    (root / "notes.jpg").write_text("these are my notes, not a photo\n")
    (root / "empty.jpg").write_bytes(b"")
    (root / "readme.txt").write_text("not an image, ignored\n")
    (root / ".hidden.jpg").write_bytes(data)  # hidden files are left out
    return root


@pytest.fixture(scope="module")
def result(folder: Path, onnx_path: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("batch-out") / "run"
    return predict_folder(
        folder,
        onnx_path,
        out,
        SETTINGS,
        task=get_task("detect"),
        source="my photos",
        progress=False,
    )


def test_counts_add_up_and_bad_files_have_reasons(result: PredictionSet) -> None:
    summary = result.summary
    assert summary["images_in"] == 11
    assert summary["predicted"] == 7 and summary["bad"] == 4
    assert summary["images_in"] == summary["predicted"] + summary["bad"]
    assert summary["ignored_files"] == {".txt": 1}
    with (result.root / BAD_FILES_CSV).open() as handle:
        bad = {row["file"]: row for row in csv.DictReader(handle)}
    assert {k: v["reason"] for k, v in bad.items()} == {
        "cut.jpg": "truncated",
        "empty.jpg": "zero_byte",
        "noise.png": "unreadable",
        "notes.jpg": "unreadable",
    }
    assert "text" in bad["notes.jpg"]["detail"]
    assert summary["source"] == "my photos" and summary["images_per_s"] > 0


def test_outputs_agree_with_the_detector(
    result: PredictionSet, folder: Path, onnx_path: Path
) -> None:
    document = json.loads((result.root / PREDICTIONS_JSON).read_text())
    images = {r["image"]: r for r in document["images"]}
    assert len(images) == 7 and any(i.startswith("nested/deeper/") for i in images)
    detector = OnnxDetector(onnx_path)
    with (result.root / PREDICTIONS_CSV).open() as handle:
        rows = list(csv.DictReader(handle))
    total = 0
    for name, record in images.items():
        image = cv2.imread(str(folder / name))
        ours = detector.predict(image, conf=0.01, iou=0.7, max_det=20)
        boxes = record["detections"]
        assert len(boxes) == len(ours), name
        assert [b["class_id"] for b in boxes] == ours.class_ids.tolist()
        np.testing.assert_allclose(
            [b["confidence"] for b in boxes], ours.scores, atol=1e-4
        )
        np.testing.assert_allclose(
            [list(b["box"].values()) for b in boxes],
            ours.boxes.reshape(-1, 4),
            atol=0.01,
        )
        mine = [r for r in rows if r["image"] == name]
        assert [(r["class_name"], float(r["x1"])) for r in mine] == [
            (b["class_name"], b["box"]["x1"]) for b in boxes
        ]
        label = (result.root / record["label"]).read_text().splitlines()
        assert len(label) == len(boxes)
        h, w = image.shape[:2]
        for line, box in zip(label, boxes, strict=True):
            cls, cx, cy, bw, bh, conf = (float(v) for v in line.split())
            assert int(cls) == box["class_id"] and conf == pytest.approx(
                box["confidence"], abs=1e-5
            )
            assert (cx - bw / 2) * w == pytest.approx(box["box"]["x1"], abs=0.01)
            assert (cy + bh / 2) * h == pytest.approx(box["box"]["y2"], abs=0.01)
        total += len(boxes)
    assert total == len(rows) == result.summary["boxes"] > 0
    # The .jpg and the .png of the same photo keep separate label files.
    labels = {r["label"] for r in images.values()}
    assert len(labels) == 7 and all((result.root / p).is_file() for p in labels)


def test_sample_grid_decodes(result: PredictionSet) -> None:
    grid = cv2.imread(str(result.root / SAMPLE_GRID))
    assert grid is not None and grid.shape[2] == 3
    assert grid.shape[1] == 2 * 240  # four picks, two columns (unless one was bad)


def test_materializer_round_trip_and_html(
    result: PredictionSet, tmp_path: Path
) -> None:
    from visionops.app.materializers import PredictionSetMaterializer

    materializer = PredictionSetMaterializer(uri=str(tmp_path / "artifact"))
    materializer.save(PredictionSet(result.root))
    assert result.root.is_dir()  # not a step's scratch folder: left alone
    loaded = PredictionSetMaterializer(uri=str(tmp_path / "artifact")).load(
        PredictionSet
    )
    assert loaded.summary == result.summary
    assert (loaded.root / PREDICTIONS_CSV).read_text() == (
        result.root / PREDICTIONS_CSV
    ).read_text()
    meta = materializer.extract_metadata(loaded)
    assert meta["predicted"] == 7 and meta["bad"] == 4
    (path,) = materializer.save_visualizations(loaded)
    page = Path(path).read_text()
    assert "notes.jpg" in page and "data:image/jpeg;base64," in page


def test_refuses_a_non_empty_output(folder: Path, onnx_path: Path) -> None:
    with pytest.raises(ValueError, match="not empty"):
        predict_folder(
            folder, onnx_path, folder, SETTINGS, task=get_task("detect"), progress=False
        )


def test_records_each_image_and_keeps_what_selection_picks(
    folder: Path, onnx_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "store"))
    keep_two = {"selection": {"random": {"fraction": 1.0, "per_hour": 2}}}
    result = predict_folder(
        folder,
        onnx_path,
        tmp_path / "out",
        SETTINGS,
        task=get_task("detect"),
        model={"name": MODEL, "version": "4"},
        progress=False,
        feedback=FeedbackSettings.model_validate(keep_two),
    )
    store = FeedbackStore(tmp_path / "store")
    records = list(store.records())
    document = json.loads((result.root / PREDICTIONS_JSON).read_text())
    # One per predicted image (not the 4 bad files), from `batch`.
    assert sorted(r["image"]["name"] for r in records) == sorted(
        i["image"] for i in document["images"]
    )
    assert {r["source"] for r in records} == {"batch"}
    assert {r["model"]["name"] for r in records} == {MODEL}
    assert sum(r["selected"] for r in records) == 2
    kept = store.selected()  # written before predict_folder returned
    assert len(kept) == 2 and all("detections" in k.predictions for k in kept)
    assert result.summary["feedback"]["recorded"] == 7


# --- one real pipeline run -----------------------------------------------------------


@pytest.fixture(scope="module")
def champion(sample_dir: Path) -> str:
    """A tiny model trained and promoted as the first champion of `MODEL`."""
    import run

    assert run.main(["--stack", "local"]) == 0
    ingest = ["--pipeline", "ingestion", "--source", str(sample_dir)]
    assert run.main([*ingest, "--set", "anonymize.enabled=false"]) == 0
    train = ["--pipeline", "training"]
    for override in TINY:
        train += ["--set", override]
    assert run.main(train) == 0
    return MODEL


def test_batch_pipeline_end_to_end(
    champion: str,
    folder: Path,
    tmp_path: Path,
    capsys,
    outbound,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from zenml.client import Client

    import run

    monkeypatch.setenv(STORE_ENV, str(tmp_path / "store"))
    args = ["--pipeline", "batch", "--source", str(folder)]
    for override in (f"model.name={champion}", "conf=0.01", f"output_dir={tmp_path}"):
        args += ["--set", override]
    assert run.main(args) == 0
    printed = capsys.readouterr().out
    assert "11 images in = 7 predicted + 4 bad" in printed
    assert "recorded 7 images" in printed
    records = list(FeedbackStore(tmp_path / "store").records())
    assert len(records) == 7 and {r["source"] for r in records} == {"batch"}
    assert {(r["model"]["name"], r["model"]["version"]) for r in records} == {
        (champion, "1")
    }
    where = Path(printed.split("Predictions: ")[-1].strip())
    assert where.parent == tmp_path
    for name in (PREDICTIONS_CSV, PREDICTIONS_JSON, BAD_FILES_CSV, SAMPLE_GRID):
        assert (where / name).is_file()
    # The champion kept a drift reference: 7 images are too few for a verdict.
    drift = json.loads((where / "drift.json").read_text())
    assert drift["verdict"] is None and "7 images" in drift["reason"]
    assert "Drift: no verdict: 7 images" in printed

    last = Client().get_pipeline("batch").last_run
    info = last.steps["load_champion"].outputs["champion_info"][0].load()
    assert info.name == champion and info.version == "1"
    predictions = last.steps["predict_folder"].outputs["predictions"][0]
    assert predictions.run_metadata["predicted"] == 7
    assert predictions.visualizations  # the HTML view for the dashboard
    report = last.steps["predict_folder"].outputs["batch_report"][0].load()
    assert "Batch predictions" in str(report)
    assert outbound == []


def test_batch_on_a_dataset_split(champion: str, capsys) -> None:
    from zenml.client import Client

    import run

    args = ["--pipeline", "batch", "--source", "dataset:val", "--set"]
    assert run.main([*args, f"model.name={champion}", "--set", "output_dir=null"]) == 0
    last = Client().get_pipeline("batch").last_run
    step = last.steps["predict_folder"]
    dataset = step.inputs["dataset"][0].load()  # lineage: the version it read
    expected = len(list((dataset.root / "images" / "val").iterdir()))
    assert step.outputs["predictions"][0].run_metadata["predicted"] == expected > 0
    assert "Predictions: " in capsys.readouterr().out


def test_missing_champion_fails_before_any_work(
    champion: str, folder: Path, capsys, tmp_path: Path
) -> None:
    from zenml.client import Client

    import run

    runs_before = len(Client().list_pipeline_runs(size=1000).items)
    args = ["--pipeline", "batch", "--source", str(folder)]
    assert run.main([*args, "--set", "model.name=never-trained"]) == 2
    err = capsys.readouterr().err
    assert "never-trained" in err
    assert "run python run.py --pipeline training first" in err
    assert len(Client().list_pipeline_runs(size=1000).items) == runs_before
    args = ["--pipeline", "batch", "--source", str(folder / "nope")]
    assert run.main([*args, "--set", f"model.name={champion}"]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    args = ["--pipeline", "batch", "--source", str(notes)]
    assert run.main([*args, "--set", f"model.name={champion}"]) == 2
    assert "no image or video files" in capsys.readouterr().err
    assert len(Client().list_pipeline_runs(size=1000).items) == runs_before


def test_names_that_read_as_formulas_are_escaped_in_the_csv_files(
    tiny_dataset, onnx_path: Path, tmp_path: Path
) -> None:
    """A file named like a spreadsheet formula is a text cell in both tables."""
    folder = tmp_path / "in"
    folder.mkdir()
    photo = sorted((tiny_dataset.root / "images" / "test").iterdir())[0]
    shutil.copy(photo, folder / "=HYPERLINK(1).jpg")
    (folder / "@evil.jpg").write_text("not a photo\n")
    (folder / "-2+3.png").write_bytes(b"")
    result = predict_folder(
        folder,
        onnx_path,
        tmp_path / "out",
        SETTINGS,
        task=get_task("detect"),
        progress=False,
    )
    with (result.root / PREDICTIONS_CSV).open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["image"] for r in rows} == {"'=HYPERLINK(1).jpg"}
    assert all(float(r["confidence"]) > 0 for r in rows)  # numbers stay numbers
    with (result.root / BAD_FILES_CSV).open() as handle:
        bad = sorted(row["file"] for row in csv.DictReader(handle))
    assert bad == ["'-2+3.png", "'@evil.jpg"]
    # The JSON keeps the names as they are.
    document = json.loads((result.root / PREDICTIONS_JSON).read_text())
    assert [i["image"] for i in document["images"]] == ["=HYPERLINK(1).jpg"]


def test_csv_cell_leaves_numbers_and_plain_text() -> None:
    from visionops.core.files import csv_cell

    assert [csv_cell(v) for v in ("board", -1.5, 0, "a=b", "+1", "\tx")] == [
        "board",
        -1.5,
        0,
        "a=b",
        "'+1",
        "'\tx",
    ]


def test_drift_pipeline_over_the_champions_records(
    champion: str, tmp_path: Path, capsys
) -> None:
    """Records of X-rays sent to the board detector: `drift`, in MLflow and
    `--status`; `drift.retrain` prints what to run."""
    import run
    from tests.conftest import CHEST_XRAY
    from visionops.core import images
    from visionops.feedback.features import Featurizer
    from visionops.feedback.store import FEATURES, FeedbackStore, new_id, utc_now
    from visionops.training.champion import Champion
    from visionops.training.drift import fetch_reference

    if not CHEST_XRAY.is_dir():
        pytest.skip(f"{CHEST_XRAY} is not present beside the checkout")
    found = Champion.get(champion)
    reference = fetch_reference(found, tmp_path / "reference")
    assert reference is not None  # kept by the training pipeline
    task = found.get_task()
    featurizer = Featurizer(
        task, found.fetch_onnx(tmp_path / "onnx"), pca=reference.pca
    )
    store = FeedbackStore(tmp_path / "store")
    for path in sorted(CHEST_XRAY.rglob("*.jpeg"))[::15]:
        image = images.read(path)
        prediction = task.predict(featurizer.predictor, [image])[0]
        store.append(
            {
                "id": new_id(),
                "time": utc_now().isoformat(),
                "model": {"name": champion, "version": found.version},
                "features": featurizer(image, prediction),
            },
            FEATURES,
        )
    args = ["--pipeline", "drift"]
    for override in (
        f"model.name={champion}",
        f"store={tmp_path / 'store'}",
        f"output_dir={tmp_path / 'out'}",
        "drift.retrain=true",
    ):
        args += ["--set", override]
    assert run.main(args) == 0
    printed = capsys.readouterr().out
    assert "Drift: drift (" in printed
    assert "python run.py --pipeline training" in printed  # drift.retrain
    (report,) = (tmp_path / "out").glob("*/drift.json")
    assert json.loads(report.read_text())["images"] == 20
    assert (report.parent / "drift.html").is_file()
    assert run.main(["--status"]) == 0
    status = capsys.readouterr().out
    assert f"{champion} v{found.version}: drift" in status
