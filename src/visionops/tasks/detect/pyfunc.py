"""The promoted detector as an MLflow pyfunc: base64 images in, one row per box out."""

from __future__ import annotations

from typing import Any

from mlflow.types import DataType

from visionops.engine.pyfunc import OnnxPyfunc
from visionops.engine.task import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET
from visionops.tasks.detect.onnx import OnnxDetector

# A detection record's columns (`Detections.to_records`, its box spread out).
BOX_COLUMNS: dict[str, DataType] = {
    "class_id": DataType.long,
    "class_name": DataType.string,
    "confidence": DataType.double,
    "x1": DataType.double,
    "y1": DataType.double,
    "x2": DataType.double,
    "y2": DataType.double,
}


class YoloOnnxModel(OnnxPyfunc):
    """Detects objects in base64-encoded images with the exported ONNX graph.

    One row per box: class, confidence and x1, y1, x2, y2 in the image's pixels;
    params `conf`, `iou` and `max_det`. Registered detectors name this class
    (and its module's old name, `visionops.mlflow_model`) in their model code.
    """

    predictor_class = OnnxDetector
    columns = BOX_COLUMNS
    params = {"conf": DEFAULT_CONF, "iou": DEFAULT_IOU, "max_det": DEFAULT_MAX_DET}

    @classmethod
    def metadata(cls, predictor: Any) -> dict[str, Any]:
        """The shared metadata plus the head's kind (`end2end`)."""
        return {**super().metadata(predictor), "end2end": predictor.end2end}
