"""The promoted segmenter as an MLflow pyfunc: base64 images in, instances out."""

from __future__ import annotations

from mlflow.types import DataType
from mlflow.types.schema import Array

from visionops.engine.pyfunc import OnnxPyfunc
from visionops.tasks.detect.pyfunc import BOX_COLUMNS, YoloOnnxModel
from visionops.tasks.segment.onnx import OnnxSegmenter


class SegmenterOnnxModel(OnnxPyfunc):
    """Segments base64-encoded images with the exported ONNX graph.

    One row per instance: the detector's columns (class, confidence, box) plus
    `polygon`, the largest outline of its mask as `[[x, y], ...]` in the
    image's pixels; the detector's params.
    """

    predictor_class = OnnxSegmenter
    columns = {**BOX_COLUMNS, "polygon": Array(Array(DataType.double))}
    params = YoloOnnxModel.params
