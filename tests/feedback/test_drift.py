"""Drift reports on tiny models of each task: images like the training data are
`ok`, images of another kind are `drift`, naming what moved; too few, no verdict."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import (
    BOARDS,
    CHEST_XRAY,
    CLS_IMGSZ,
    SAMPLE,
    SEG_IMGSZ,
    SHARED_DATASETS,
)
from visionops.config import BatchSettings, DriftSettings
from visionops.core import images
from visionops.feedback.drift import DRIFT_HTML, DRIFT_JSON, drift_report
from visionops.feedback.features import (
    IMAGE_FEATURES,
    Featurizer,
    build_reference,
    novelty,
)
from visionops.tasks import get_task

DETECT_IMGSZ = 128  # the size `tiny_weights` was trained at
SOLES = SHARED_DATASETS / "shoe-soles-seg"
# A script or stylesheet fetched from outside: the page would not open offline.
OUTSIDE_ASSET = re.compile(
    r"<(script|link|img|iframe)[^>]+(src|href)=[\"']?https?://|url\(\s*[\"']?https?://",
    re.IGNORECASE,
)


def _pick(folder: Path, count: int, pattern: str = "*.jp*g") -> list[Path]:
    files = sorted(folder.rglob(pattern))
    if not files:
        pytest.skip(f"{folder} holds no images")
    step = max(1, len(files) // count)
    return files[::step][:count]


def _folder(tmp: Path, files: list[Path]) -> Path:
    tmp.mkdir(parents=True)
    for file in files:
        shutil.copy2(file, tmp / file.name)
    return tmp


def _rows(featurizer: Featurizer, paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        image = images.read(path)
        prediction = featurizer.task.predict(featurizer.predictor, [image])[0]
        rows.append(featurizer(image, prediction))
    return rows


# --- detection, through the batch run ----------------------------------------------


@pytest.fixture(scope="module")
def detector(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from visionops.engine.onnx import export_onnx

    return export_onnx(
        tiny_weights, DETECT_IMGSZ, tmp_path_factory.mktemp("drift-onnx")
    )


@pytest.fixture(scope="module")
def detect_reference(detector: Path, tiny_dataset):
    """The tiny detector's reference on the sample's val and test splits."""
    from visionops.training.drift import capture_reference

    return capture_reference(get_task("detect"), detector, tiny_dataset)


def _batch(folder: Path, detector: Path, reference, out: Path) -> dict:
    from visionops.batch.predict import predict_folder

    predictions = predict_folder(
        folder,
        detector,
        out,
        BatchSettings(device="cpu", threads=1),
        task=get_task("detect"),
        progress=False,
        reference=reference,
    )
    assert predictions.drift == out / DRIFT_JSON
    page = (out / DRIFT_HTML).read_text(encoding="utf-8")
    assert OUTSIDE_ASSET.search(page) is None
    return json.loads((out / DRIFT_JSON).read_text())


def test_reference_holds_val_and_test_features(detect_reference, tiny_dataset) -> None:
    task = get_task("detect")
    splits = [row["split"] for row in detect_reference.rows]
    assert splits.count("val") == len(task.split_images(tiny_dataset, "val"))
    assert splits.count("test") == len(task.split_images(tiny_dataset, "test"))
    row = detect_reference.rows[0]
    for key in (*IMAGE_FEATURES, "detections", "confidence", "count_board", "emb_0"):
        assert key in row, key
    assert "embedding" not in row  # projected by the reference's PCA
    assert 1 <= detect_reference.pca.components.shape[0] <= 32


def test_batch_over_boards_like_the_training_data_is_ok(
    detector, detect_reference, tiny_dataset, tmp_path: Path
) -> None:
    task = get_task("detect")
    train = task.split_dir(tiny_dataset, "train")
    found = _batch(train, detector, detect_reference, tmp_path / "train")
    assert found["verdict"] == "ok", found["moved"]
    assert found["drifted"] == []
    assert found["images"] == len(task.split_images(tiny_dataset, "train"))

    if not BOARDS.is_dir():
        pytest.skip(f"{BOARDS} is not present beside the checkout")
    export = _folder(
        tmp_path / "export",
        _pick(BOARDS / "valid", 20) + _pick(BOARDS / "test", 20),
    )
    found = _batch(export, detector, detect_reference, tmp_path / "boards")
    assert found["verdict"] == "ok", found["moved"]


@pytest.mark.parametrize(
    "source", [CHEST_XRAY, SAMPLE.parent / "shoe-soles"], ids=["xrays", "soles"]
)
def test_batch_over_another_kind_of_image_drifts(
    source: Path, detector, detect_reference, tmp_path: Path
) -> None:
    if not source.is_dir():
        pytest.skip(f"{source} is not present beside the checkout")
    folder = _folder(tmp_path / "in", _pick(source, 20))
    found = _batch(folder, detector, detect_reference, tmp_path / "out")
    assert found["verdict"] == "drift"
    # What moved is named: the images' look and the model's embedding.
    assert {"brightness", "sharpness"} & set(found["drifted"]), found["drifted"]
    assert "embedding" in found["drifted"]
    assert found["tests"]["brightness"]["moved"] is True
    page = (tmp_path / "out" / DRIFT_HTML).read_text(encoding="utf-8")
    assert "Verdict: drift" in page


def test_three_images_give_no_verdict(
    detector, detect_reference, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "in", _pick(SAMPLE, 3))
    found = _batch(folder, detector, detect_reference, tmp_path / "out")
    assert found["verdict"] is None
    assert found["drifted"] == []
    assert "3 images" in found["reason"] and "drift.min_images" in found["reason"]
    page = (tmp_path / "out" / DRIFT_HTML).read_text(encoding="utf-8")
    assert "No verdict: 3 images" in page


def test_novelty_ranks_another_kind_of_image_further(
    detector, detect_reference, tiny_dataset
) -> None:
    task = get_task("detect")
    featurizer = Featurizer(task, detector, pca=detect_reference.pca)
    like = _rows(featurizer, task.split_images(tiny_dataset, "train")[:10])
    other = _rows(featurizer, _pick(SAMPLE.parent / "shoe-soles", 10))
    near = sorted(novelty(row, detect_reference) for row in like)[len(like) // 2]
    far = sorted(novelty(row, detect_reference) for row in other)[len(other) // 2]
    assert far > 2 * near


# --- the reference in MLflow, records, --status ---------------------------------------


def test_records_report_from_the_champions_run(
    local_mlflow, detector, tiny_dataset, detect_reference, tmp_path: Path
) -> None:
    from visionops.feedback.store import FEATURES, FeedbackStore, new_id, utc_now
    from visionops.training.champion import Champion
    from visionops.training.drift import (
        capture_reference,
        fetch_reference,
        latest_verdicts,
        log_drift,
        records_drift,
    )

    task = get_task("detect")
    with local_mlflow.start_run() as run:
        run_id = run.info.run_id
    champion = Champion(name="boards", version="3", run_id=run_id, task="detect")
    assert fetch_reference(champion, tmp_path / "none") is None  # not kept yet
    capture_reference(task, detector, tiny_dataset, run_id=run_id)
    fetched = fetch_reference(champion, tmp_path / "fetched")
    assert fetched is not None
    assert len(fetched.rows) == len(detect_reference.rows)
    assert fetched.model["version"] == "3"

    # The service's records carry the Featurizer's record under `features`.
    featurizer = Featurizer(task, detector, pca=fetched.pca)
    store = FeedbackStore(tmp_path / "store")
    for row in _rows(featurizer, _pick(CHEST_XRAY, 12)):
        model = {"name": "boards", "version": "3"}
        store.append(
            {
                "id": new_id(),
                "time": utc_now().isoformat(),
                "model": model,
                "features": row,
            },
            FEATURES,
        )
    store.append({"id": new_id(), "time": utc_now().isoformat(), "model": "other"})
    result = records_drift(
        champion, store, DriftSettings(), tmp_path / "report", days=1
    )
    assert result.images == 12
    assert result.verdict == "drift"
    run_id = log_drift(tmp_path / "report", champion, source="records")
    latest = latest_verdicts()["boards"]
    assert latest["verdict"] == "drift"
    assert latest["run_id"] == run_id
    assert "embedding" in latest["drifted"]
    client = local_mlflow.tracking.MlflowClient()
    assert client.get_run(run_id).data.metrics["drift_detected"] == 1.0
    logged = {f.path for f in client.list_artifacts(run_id, "drift")}
    assert logged == {"drift/drift.html", "drift/drift.json"}


# --- the classifier and the segmenter, from their own features ------------------------


def test_classifier_report_from_its_own_features(cls_weights: Path, tmp_path) -> None:
    from visionops.engine.onnx import export_onnx

    task = get_task("classify")
    onnx = export_onnx(cls_weights, CLS_IMGSZ, tmp_path)
    featurizer = Featurizer(task, onnx)
    # Both classes, alternating, so every slice has the same class mix.
    by_class = [sorted(folder.glob("*.jpeg"))[::4] for folder in CHEST_XRAY.iterdir()]
    xrays = [path for pair in zip(*by_class, strict=False) for path in pair]
    reference = build_reference(
        featurizer, {"val": xrays[:15], "test": xrays[15:30]}, 32
    )
    assert {"confidence", "margin", "top_class"} <= set(reference.rows[0])
    settings = DriftSettings()
    same, _ = drift_report(_rows(featurizer, xrays[30:50]), reference, settings)
    assert same.verdict == "ok", same.moved
    other, _ = drift_report(_rows(featurizer, _pick(SAMPLE, 20)), reference, settings)
    assert other.verdict == "drift"
    assert "embedding" in other.drifted and "width" in other.drifted


def test_segmenter_report_from_its_own_features(seg_weights: Path, tmp_path) -> None:
    from visionops.engine.onnx import export_onnx

    if not SOLES.is_dir():
        pytest.skip(f"{SOLES} is not present beside the checkout")
    task = get_task("segment")
    onnx = export_onnx(seg_weights, SEG_IMGSZ, tmp_path)
    featurizer = Featurizer(task, onnx)
    # The export's valid and test photos differ from its train ones in brightness
    # (a report of train against them finds it moved): reference and current
    # images both come from train.
    soles = _pick(SOLES / "train", 60)
    reference = build_reference(
        featurizer, {"val": soles[0::3], "test": soles[1::3]}, 32
    )
    assert "pixels_shoes" in reference.rows[0]
    settings = DriftSettings()
    same, _ = drift_report(_rows(featurizer, soles[2::3]), reference, settings)
    assert same.verdict == "ok", same.moved
    other, _ = drift_report(
        _rows(featurizer, _pick(CHEST_XRAY, 20)), reference, settings
    )
    assert other.verdict == "drift"
    assert "embedding" in other.drifted
