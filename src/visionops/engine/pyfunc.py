"""A task's champion as an MLflow pyfunc: base64 images in, the task's records out."""

from __future__ import annotations

import base64
import binascii
import importlib.util
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import cv2
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
from mlflow.types.schema import Array

import visionops
from visionops.core import images
from visionops.core.env import pinned

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

    from visionops.engine.onnx import OnnxPredictor

INPUT_COLUMN = "image"
IMAGE_INDEX = "image_index"  # the input row each output row answers
ONNX_ARTIFACT = "onnx"
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

from {module} import {name}

mlflow.models.set_model({name}())
"""
# Output column types as pandas holds them (strings and lists are objects).
PANDAS_DTYPES = {DataType.long: "int64", DataType.double: "float64"}
PARAM_TYPES = {int: DataType.long, float: DataType.double}

Column = DataType | Array


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


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    """A record with its nested dicts (a detection's `box`) spread into columns."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        flat.update(value if isinstance(value, dict) else {key: value})
    return flat


class OnnxPyfunc(PythonModel):
    """A task's ONNX export as an MLflow pyfunc, one interface for every task.

    In: a DataFrame with a string column `image` of base64 JPEG/PNG file bytes.
    Out: one row per record the task's prediction gives for an image (its
    `to_records`), the image's input row in `image_index`; an image without
    records has no row. A task subclasses it with what differs: its predictor,
    its output `columns`, its `params` and, where needed, `records`.

    Attributes:
        predictor_class: The task's predictor (`Task.predictor`'s class).
        columns: The output columns after `image_index` and their MLflow types;
            a nested record dict (a detection's `box`) is spread into columns.
        params: The predict-time parameters and their defaults, passed to the
            predictor's `predict_batch` (thresholds).
    """

    predictor_class: ClassVar[type[OnnxPredictor]]
    columns: ClassVar[dict[str, Column]]
    params: ClassVar[dict[str, float | int]] = {}

    def load_context(self, context: PythonModelContext) -> None:
        """Opens the ONNX artifact with the task's predictor."""
        self.predictor = self.predictor_class(context.artifacts[ONNX_ARTIFACT])

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Returns the task's records of every image, one row each.

        Args:
            context: The MLflow context (unused after loading).
            model_input: A string column "image" with base64 JPEG/PNG file bytes.
            params: Overrides of `params`' defaults.

        Returns:
            `image_index` (the input row's position), then `columns`.

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
        given = params or {}
        settings = {k: type(v)(given.get(k, v)) for k, v in self.params.items()}
        frames = [
            decode_image(value, index)
            for index, value in enumerate(model_input[INPUT_COLUMN].tolist())
        ]
        predictions = self.predictor.predict_batch(frames, **settings)
        rows = [
            {IMAGE_INDEX: index, **_flat(record)}
            for index, prediction in enumerate(predictions)
            for record in self.records(prediction)
        ]
        dtypes = self.dtypes()
        return pd.DataFrame(rows, columns=list(dtypes)).astype(dtypes)

    def records(self, prediction: Any) -> list[dict[str, Any]]:
        """One image's records: its prediction's `to_records`."""
        return prediction.to_records(self.predictor.names)

    @classmethod
    def dtypes(cls) -> dict[str, str]:
        """The pandas dtype of each output column, `image_index` first."""
        columns = {IMAGE_INDEX: DataType.long, **cls.columns}
        return {
            name: PANDAS_DTYPES.get(kind, "object")
            if isinstance(kind, DataType)
            else "object"
            for name, kind in columns.items()
        }

    @classmethod
    def signature(cls) -> ModelSignature:
        """The logged signature: the image column, the output columns, params."""
        columns = {IMAGE_INDEX: DataType.long, **cls.columns}
        return ModelSignature(
            inputs=Schema([ColSpec(DataType.string, INPUT_COLUMN)]),
            outputs=Schema([ColSpec(kind, name) for name, kind in columns.items()]),
            params=ParamSchema(
                [
                    ParamSpec(name, PARAM_TYPES[type(default)], default)
                    for name, default in cls.params.items()
                ]
            )
            if cls.params
            else None,
        )

    @classmethod
    def metadata(cls, predictor: Any) -> dict[str, Any]:
        """What the MLmodel records about the graph (a task may add to it)."""
        return {
            "class_names": [predictor.names[i] for i in sorted(predictor.names)],
            "imgsz": list(predictor.imgsz),
        }


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
    return pinned(*SERVING_PACKAGES)


def log_pyfunc_model(
    model: type[OnnxPyfunc],
    onnx_path: Path,
    *,
    name: str = "model",
    metadata: dict | None = None,
    registered_model_name: str | None = None,
    example_image: Path | bytes | None = None,
) -> ModelInfo:
    """Logs an ONNX export as the task's pyfunc model into the active MLflow run.

    The model is logged from code (no pickle) and carries the ONNX file as an
    artifact, an explicit signature (`model.signature()`), a small input
    example, pinned requirements and a copy of the `visionops` package, so it
    loads where `visionops` is not installed, with only the pinned packages and
    MLflow.

    Args:
        model: The task's pyfunc class (`Task.pyfunc_model()`).
        onnx_path: The graph written by `visionops.engine.onnx.export_onnx`.
        name: The model's name within the run (`runs:/<run_id>/<name>`).
        metadata: Extra MLmodel metadata (`Task.log_model` adds the task),
            merged over what `model.metadata` reads from the graph (class
            names, input size).
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
    model_metadata = {
        **model.metadata(model.predictor_class(onnx_path)),
        "onnx_file": onnx_path.name,
        **(metadata or {}),
    }
    example = pd.DataFrame({INPUT_COLUMN: [_example_image_b64(example_image)]})

    with tempfile.TemporaryDirectory(prefix="visionops-pyfunc-") as tmp:
        # The model code imports the task's pyfunc module and the engine; ship
        # the package (without bytecode caches) so neither must be installed.
        package = Path(tmp) / "visionops"
        shutil.copytree(
            Path(visionops.__file__).parent,
            package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        model_code = Path(tmp) / "onnx_model.py"
        model_code.write_text(
            MODEL_CODE.format(module=model.__module__, name=model.__qualname__)
        )
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(model_code),
            artifacts={ONNX_ARTIFACT: str(onnx_path)},
            code_paths=[str(package)],
            signature=model.signature(),
            input_example=example,
            pip_requirements=serving_requirements(),
            metadata=model_metadata,
            registered_model_name=registered_model_name,
        )
