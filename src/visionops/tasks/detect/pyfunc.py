"""The promoted detector as an MLflow pyfunc: base64 images in, one row per box out."""

from __future__ import annotations

import base64
import binascii
import importlib.util
import shutil
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import cv2
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

import visionops
from visionops.core import images
from visionops.tasks.detect.onnx import Detections, OnnxDetector

INPUT_COLUMN = "image"
ONNX_ARTIFACT = "onnx"
DEFAULT_PARAMS: dict[str, Any] = {"conf": 0.25, "iou": 0.7, "max_det": 300}
OUTPUT_DTYPES: dict[str, str] = {
    "image_index": "int64",
    "class_id": "int64",
    "class_name": "object",
    "confidence": "float64",
    "x1": "float64",
    "y1": "float64",
    "x2": "float64",
    "y2": "float64",
}
# What the pyfunc imports at serving time besides MLflow: pinned to this
# environment, so MLflow neither infers nor resolves anything (offline, and the
# served model never pulls in torch or Ultralytics).
SERVING_PACKAGES = (
    "onnxruntime",
    "opencv-python-headless",
    "numpy",
    "pandas",
    "pillow",  # visionops.core.images sniffs formats and reads headers with it
)
EXAMPLE_SIDE = 160  # longest side of the logged input example, to keep it small
# Logged as "model from code": MLflow runs this at load time instead of
# unpickling an object, so no pickle crosses from the registry into a server.
MODEL_CODE = """\
import mlflow

from visionops.tasks.detect.pyfunc import YoloOnnxModel

mlflow.models.set_model(YoloOnnxModel())
"""

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(DataType.string, INPUT_COLUMN)]),
    outputs=Schema(
        [
            ColSpec(DataType.long, "image_index"),
            ColSpec(DataType.long, "class_id"),
            ColSpec(DataType.string, "class_name"),
            ColSpec(DataType.double, "confidence"),
            ColSpec(DataType.double, "x1"),
            ColSpec(DataType.double, "y1"),
            ColSpec(DataType.double, "x2"),
            ColSpec(DataType.double, "y2"),
        ]
    ),
    params=ParamSchema(
        [
            ParamSpec("conf", DataType.double, DEFAULT_PARAMS["conf"]),
            ParamSpec("iou", DataType.double, DEFAULT_PARAMS["iou"]),
            ParamSpec("max_det", DataType.long, DEFAULT_PARAMS["max_det"]),
        ]
    ),
)


def image_to_b64(path_or_bytes: Path | str | bytes) -> str:
    """Returns the base64 text of an image file, the pyfunc's input format.

    Args:
        path_or_bytes: A path to a JPEG/PNG file, or its encoded bytes.
    """
    if isinstance(path_or_bytes, bytes | bytearray):
        data = bytes(path_or_bytes)
    else:
        data = Path(path_or_bytes).read_bytes()
    return base64.b64encode(data).decode("ascii")


def decode_image(value: object, index: int) -> np.ndarray:
    """Decodes one base64 cell into a BGR image.

    Args:
        value: Base64 text of JPEG/PNG bytes (a `data:image/...;base64,` prefix is
            allowed).
        index: The row, named in errors.

    Raises:
        ValueError: If the cell is not base64 of a readable image.
    """
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("ascii", errors="replace")
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"image {index}: expected base64 text of an image file, got "
            f"{type(value).__name__}"
        )
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"image {index}: not valid base64 ({err})") from err
    try:
        return images.decode(data)
    except images.ImageError as err:
        raise ValueError(
            f"image {index}: {err.reason}, {err.detail} (send JPEG or PNG file "
            "bytes, base64-encoded)"
        ) from None


def detections_frame(
    detections: list[Detections], names: dict[int, str]
) -> pd.DataFrame:
    """Returns one row per box, columns as in `OUTPUT_DTYPES`.

    Args:
        detections: One entry per input image, in input order.
        names: Class names by index.
    """
    counts = [len(d) for d in detections]
    if sum(counts):
        boxes = np.concatenate([d.boxes for d in detections]).astype(np.float64)
        class_ids = np.concatenate([d.class_ids for d in detections])
        columns: dict[str, Any] = {
            "image_index": np.repeat(np.arange(len(detections)), counts),
            "class_id": class_ids,
            "class_name": [names.get(int(c), str(c)) for c in class_ids],
            "confidence": np.concatenate([d.scores for d in detections]),
            "x1": boxes[:, 0],
            "y1": boxes[:, 1],
            "x2": boxes[:, 2],
            "y2": boxes[:, 3],
        }
    else:
        columns = {name: [] for name in OUTPUT_DTYPES}
    return pd.DataFrame(columns).astype(OUTPUT_DTYPES)


class YoloOnnxModel(PythonModel):
    """Detects objects in base64-encoded images with the exported ONNX graph."""

    def load_context(self, context: PythonModelContext) -> None:
        """Opens the ONNX artifact with ONNX Runtime."""
        self.detector = OnnxDetector(context.artifacts[ONNX_ARTIFACT])

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Returns one row per detected box.

        Args:
            context: The MLflow context (unused after loading).
            model_input: A string column "image" with base64 JPEG/PNG file bytes.
            params: Optional `conf` (0.25), `iou` (0.7) and `max_det` (300).

        Returns:
            Columns image_index (the input row's position), class_id, class_name,
            confidence and x1, y1, x2, y2 in the image's pixels; an image without
            boxes has no row.

        Raises:
            ValueError: If the column is missing or an image cannot be decoded
                (the message names its row).
        """
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        if INPUT_COLUMN not in model_input.columns:
            raise ValueError(
                f"expected a column {INPUT_COLUMN!r} of base64 images, got "
                f"{list(model_input.columns)}"
            )
        settings = {**DEFAULT_PARAMS, **(params or {})}
        images = [
            decode_image(value, index)
            for index, value in enumerate(model_input[INPUT_COLUMN].tolist())
        ]
        detections = self.detector.predict_batch(
            images,
            conf=float(settings["conf"]),
            iou=float(settings["iou"]),
            max_det=int(settings["max_det"]),
        )
        return detections_frame(detections, self.detector.names)


def _example_image_b64(example_image: Path | bytes | None) -> str:
    """Returns a small base64 JPEG for the logged input example."""
    if example_image is None:
        # A real photo without needing a dataset: the one Ultralytics ships, found
        # without importing (and so without loading torch).
        spec = importlib.util.find_spec("ultralytics")
        if spec and spec.origin:
            bus = Path(spec.origin).parent / "assets" / "bus.jpg"
            example_image = bus if bus.is_file() else None
    image: np.ndarray
    if example_image is None:
        image = np.full((EXAMPLE_SIDE, EXAMPLE_SIDE, 3), 114, np.uint8)
    else:
        photo = decode_image(image_to_b64(example_image), 0)
        scale = min(1.0, EXAMPLE_SIDE / max(photo.shape[:2]))
        size = (round(photo.shape[1] * scale), round(photo.shape[0] * scale))
        image = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR image
        raise RuntimeError("could not encode the input example")
    return image_to_b64(encoded.tobytes())


def serving_requirements() -> list[str]:
    """Returns the pyfunc's pip requirements, pinned to the installed versions."""
    return [f"{p}=={importlib_metadata.version(p)}" for p in SERVING_PACKAGES]


def log_pyfunc_model(
    onnx_path: Path,
    *,
    name: str = "model",
    metadata: dict | None = None,
    registered_model_name: str | None = None,
    example_image: Path | bytes | None = None,
) -> ModelInfo:
    """Logs the ONNX detector as a pyfunc model into the active MLflow run.

    The model is logged from code (no pickle) and carries the ONNX file as an
    artifact, an explicit signature with `conf`/`iou`/`max_det` params, a small
    input example, pinned requirements and a copy of the `visionops` package, so
    it loads where `visionops` is not installed, with only the pinned packages
    and MLflow.

    Args:
        onnx_path: The graph written by `visionops.engine.onnx.export_onnx`.
        name: The model's name within the run (`runs:/<run_id>/<name>`).
        metadata: Extra MLmodel metadata, merged over the class names, input size
            and head kind read from the graph.
        registered_model_name: Also register a new version under this name.
        example_image: The image for the input example (a path or file bytes);
            by default the photo Ultralytics ships. Shrunk to a small JPEG.

    Returns:
        MLflow's info on the logged model.

    Raises:
        RuntimeError: If no MLflow run is active.
    """
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError(
            "log_pyfunc_model logs into the active MLflow run; call it inside "
            "`with mlflow.start_run():`"
        )
    onnx_path = Path(onnx_path)
    detector = OnnxDetector(onnx_path)
    model_metadata = {
        "task": "detect",
        "class_names": [detector.names[i] for i in sorted(detector.names)],
        "imgsz": list(detector.imgsz),
        "end2end": detector.end2end,
        "onnx_file": onnx_path.name,
        **(metadata or {}),
    }
    example = pd.DataFrame({INPUT_COLUMN: [_example_image_b64(example_image)]})

    with tempfile.TemporaryDirectory(prefix="visionops-pyfunc-") as tmp:
        # The model code imports `visionops.tasks.detect.pyfunc` and the engine;
        # ship the package (without bytecode caches) so neither must be installed.
        package = Path(tmp) / "visionops"
        shutil.copytree(
            Path(visionops.__file__).parent,
            package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        model_code = Path(tmp) / "yolo_onnx_model.py"
        model_code.write_text(MODEL_CODE)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(model_code),
            artifacts={ONNX_ARTIFACT: str(onnx_path)},
            code_paths=[str(package)],
            signature=SIGNATURE,
            input_example=example,
            pip_requirements=serving_requirements(),
            metadata=model_metadata,
            registered_model_name=registered_model_name,
        )
