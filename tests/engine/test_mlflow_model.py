"""The promoted model of every task round-trips through MLflow as a pyfunc, offline."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.conftest import CLS_IMGSZ, CLS_NAMES
from visionops.engine.onnx import export_onnx
from visionops.engine.pyfunc import (
    image_to_b64,
    log_pyfunc_model,
    serving_requirements,
)
from visionops.tasks import get_task
from visionops.tasks.classify.onnx import OnnxClassifier
from visionops.tasks.detect.onnx import OnnxDetector
from visionops.tasks.detect.pyfunc import YoloOnnxModel
from visionops.tasks.segment.onnx import OnnxSegmenter

REPO = Path(__file__).resolve().parents[2]
SHOES = REPO / "data" / "sample" / "shoe-soles"  # bundled Roboflow YOLO-seg export
BOX_DTYPES = {
    "image_index": "int64",
    "class_id": "int64",
    "class_name": "object",
    "confidence": "float64",
    "x1": "float64",
    "y1": "float64",
    "x2": "float64",
    "y2": "float64",
}


def _repo_mlflow_files() -> set[Path]:
    found = set((REPO / "mlruns").rglob("*")) if (REPO / "mlruns").exists() else set()
    return found | {p for p in (REPO / "mlflow.db",) if p.exists()}


@pytest.fixture(scope="session", autouse=True)
def repo_before() -> set[Path]:
    """The repo's MLflow files before anything here runs (even `tiny_weights`).

    Session scope puts this ahead of `tiny_weights`, whose training is where
    Ultralytics' own MLflow callback would write ./mlflow.db for a test whose id
    contains "test_mlflow", as this file's do.
    """
    return _repo_mlflow_files()


@contextlib.contextmanager
def tracking_store(store: Path) -> Iterator[None]:
    """Points MLflow at a sqlite store under `store`, then puts the old URI back.

    `set_tracking_uri` mirrors itself into MLFLOW_TRACKING_URI, so that variable
    is the whole state to restore (None unsets both); the registry follows.
    """
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def onnx_path(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(tiny_weights, 128, tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def images(tiny_dataset) -> list[Path]:
    return sorted((tiny_dataset.root / "images" / "test").iterdir())[:2]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[dict]:
    """A throwaway sqlite store, current for the module's tests."""
    store = tmp_path_factory.mktemp("mlflow")
    with tracking_store(store):
        experiment = mlflow.create_experiment(
            "pyfunc-test", artifact_location=str(store / "artifacts")
        )
        yield {"path": store, "experiment": experiment}


@pytest.fixture(scope="module")
def logged(store: dict, onnx_path: Path, images: list[Path]):
    """The detector's pyfunc logged (and registered) in the throwaway store."""
    from tests.conftest import OUTBOUND

    OUTBOUND.clear()
    with mlflow.start_run(experiment_id=store["experiment"]) as run:
        info = log_pyfunc_model(
            YoloOnnxModel,
            onnx_path,
            metadata={"dataset": "tiny"},
            registered_model_name="boards-detector",
            example_image=images[0],
        )
    return {
        "run_id": run.info.run_id,
        "info": info,
        "outbound": list(OUTBOUND),
        "store": store["path"],
    }


@pytest.fixture(scope="module")
def pyfunc(logged):
    return mlflow.pyfunc.load_model(f"runs:/{logged['run_id']}/model")


def _frame(paths: list[Path]) -> pd.DataFrame:
    return pd.DataFrame({"image": [image_to_b64(p) for p in paths]})


def test_logging_stays_offline_and_out_of_the_repo(logged, repo_before) -> None:
    assert logged["outbound"] == []
    assert _repo_mlflow_files() == repo_before
    assert any((logged["store"] / "artifacts").rglob("*.onnx"))


def test_rows_equal_the_onnx_detector(
    pyfunc, onnx_path: Path, images: list[Path]
) -> None:
    rows = pyfunc.predict(_frame(images), params={"conf": 0.001})

    assert rows.dtypes.astype(str).to_dict() == BOX_DTYPES  # the columns in order
    detector = OnnxDetector(onnx_path)
    for index, path in enumerate(images):
        expected = detector.predict(cv2.imread(str(path)), conf=0.001)
        got = rows[rows.image_index == index]
        assert len(got) == len(expected) > 0
        np.testing.assert_allclose(
            got[["x1", "y1", "x2", "y2"]].to_numpy(), expected.boxes, atol=1e-4
        )
        np.testing.assert_allclose(got.confidence, expected.scores, atol=1e-6)
        assert got.class_id.tolist() == expected.class_ids.tolist()
        assert set(got.class_name) <= set(detector.names.values())


def test_params_override_the_defaults(pyfunc, images: list[Path]) -> None:
    # The 2-epoch model scores below the default conf of 0.25 everywhere.
    assert len(pyfunc.predict(_frame(images))) == 0
    loose = pyfunc.predict(_frame(images), params={"conf": 0.001})
    capped = pyfunc.predict(_frame(images), params={"conf": 0.001, "max_det": 2})
    assert len(loose) > 4
    assert capped.groupby("image_index").size().tolist() == [2, 2]


@pytest.mark.parametrize(
    "bad", [image_to_b64(b"definitely not a jpeg"), "***not base64***"]
)
def test_undecodable_image_names_its_row(pyfunc, images: list[Path], bad) -> None:
    frame = pd.concat([_frame(images[:1]), pd.DataFrame({"image": [bad]})])
    with pytest.raises(ValueError, match="image 1"):
        pyfunc.predict(frame)


def test_logged_signature_requirements_and_registry(logged) -> None:
    info = logged["info"]
    uri = f"runs:/{logged['run_id']}/model"
    signature = mlflow.models.get_model_info(uri).signature
    assert signature.inputs.input_names() == ["image"]
    assert [p.name for p in signature.params] == ["conf", "iou", "max_det"]
    assert info.metadata["class_names"] == ["board"]
    assert info.metadata["dataset"] == "tiny"

    local = Path(mlflow.artifacts.download_artifacts(uri))
    requirements = (local / "requirements.txt").read_text().split()
    assert set(serving_requirements()) <= set(requirements)
    assert not [r for r in requirements if r.startswith(("torch", "ultralytics"))]
    example = json.loads((local / "input_example.json").read_text())
    assert example["columns"] == ["image"] and len(example["data"]) == 1

    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name='boards-detector'")
    assert [v.run_id for v in versions] == [logged["run_id"]]


def test_loads_without_visionops_installed(logged, images: list[Path]) -> None:
    """The shipped code suffices: no installed visionops, torch or Ultralytics."""
    local = mlflow.artifacts.download_artifacts(f"runs:/{logged['run_id']}/model")
    script = (
        "import sys\n"
        f"sys.path = [p for p in sys.path if p != {str(REPO / 'src')!r}]\n"
        "import importlib.util as u\n"
        "assert u.find_spec('visionops') is None, 'visionops still importable'\n"
        "import mlflow.pyfunc, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model({local!r})\n"
        f"frame = pd.DataFrame({{'image': [{image_to_b64(images[0])!r}]}})\n"
        "rows = model.predict(frame, params={'conf': 0.001})\n"
        "import visionops\n"
        "print('ROWS', len(rows), visionops.__file__)\n"
        "print('HEAVY', sorted({'torch', 'ultralytics'} & set(sys.modules)))\n"
    )
    env = {**os.environ, "VISIONOPS_ROOT": str(logged["store"])}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=logged["store"],
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ROWS 0" not in result.stdout and "ROWS" in result.stdout
    assert f"{local}" in result.stdout.split("ROWS", 1)[1]
    assert "HEAVY []" in result.stdout, result.stdout


def _champion(store: dict, task: str, onnx: Path, name: str):
    """Logs `onnx` as the promotion step does (the task's `log_model`), registers
    it as the champion of `name` and loads `models:/<name>@champion`."""
    from visionops.training.champion import CHAMPION
    from visionops.training.tracking import register_version, set_alias

    with mlflow.start_run(experiment_id=store["experiment"]):
        info = get_task(task).log_model(onnx, metadata={"dataset_hash": "tiny"})
    version = register_version(name, info.model_uri, tags={"task": task})
    set_alias(name, CHAMPION, version)
    return mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")


@pytest.fixture(scope="module")
def cls_onnx(cls_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(cls_weights, CLS_IMGSZ, tmp_path_factory.mktemp("cls-onnx"))


def test_classifier_champion_answers_every_class_probability(
    store: dict, cls_onnx: Path, classify_folder: Path
) -> None:
    xrays = sorted((classify_folder / "test").rglob("*.jpeg"))
    model = _champion(store, "classify", cls_onnx, "xray-classifier")
    rows = model.predict(_frame(xrays))

    assert rows.dtypes.astype(str).to_dict() == {
        "image_index": "int64",
        "class_id": "int64",
        "class_name": "object",
        "probability": "float64",
    }
    classifier = OnnxClassifier(cls_onnx)
    for index, path in enumerate(xrays):
        expected = classifier.predict(cv2.imread(str(path)))
        got = rows[rows.image_index == index]
        assert got.class_id.tolist() == expected.top(len(CLS_NAMES))[0].tolist()
        assert got.class_name.tolist() == [CLS_NAMES[c] for c in got.class_id]
        np.testing.assert_allclose(
            got.probability, expected.probabilities[got.class_id], atol=1e-6
        )
        assert got.probability.sum() == pytest.approx(1.0, abs=1e-5)
    meta = mlflow.models.get_model_info("models:/xray-classifier@champion").metadata
    assert meta["task"] == "classify"
    assert meta["class_names"] == list(CLS_NAMES.values())


def test_segmenter_champion_answers_instances_with_polygons(
    store: dict, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Random weights suffice: the rows must equal what the ONNX segmenter finds.
    onnx = export_onnx(Path("yolo11n-seg.yaml"), 96, tmp_path_factory.mktemp("seg"))
    soles = sorted((SHOES / "test" / "images").iterdir())[:2]
    model = _champion(store, "segment", onnx, "soles-segmenter")
    params = {"conf": 0.0, "max_det": 5}
    rows = model.predict(_frame(soles), params=params)

    assert rows.dtypes.astype(str).to_dict() == {**BOX_DTYPES, "polygon": "object"}
    segmenter = OnnxSegmenter(onnx)
    for index, path in enumerate(soles):
        expected = segmenter.predict(cv2.imread(str(path)), **params)
        got = rows[rows.image_index == index]
        assert len(got) == len(expected) > 0
        np.testing.assert_allclose(
            got[["x1", "y1", "x2", "y2"]].to_numpy(), expected.boxes, atol=1e-4
        )
        assert got.polygon.tolist() == [
            r["polygon"] for r in expected.to_records(segmenter.names)
        ]
        assert all(len(polygon) >= 3 for polygon in got.polygon)
    signature = mlflow.models.get_model_info("models:/soles-segmenter@champion")
    assert [p.name for p in signature.signature.params] == ["conf", "iou", "max_det"]


def test_tracking_store_puts_the_uri_back(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    with tracking_store(tmp_path):
        assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    assert mlflow.get_tracking_uri() == "sqlite:///elsewhere.db"

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    with tracking_store(tmp_path):
        pass
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_registered_detectors_model_code_still_imports() -> None:
    """Detectors registered before the re-layering run `from
    visionops.mlflow_model import YoloOnnxModel` when they load."""
    from visionops.mlflow_model import YoloOnnxModel as registered

    assert registered is YoloOnnxModel
