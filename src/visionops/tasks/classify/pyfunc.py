"""The promoted classifier as an MLflow pyfunc: base64 images in, probabilities out."""

from __future__ import annotations

from typing import Any

from mlflow.types import DataType

from visionops.engine.pyfunc import OnnxPyfunc
from visionops.tasks.classify.onnx import OnnxClassifier


class ClassifierOnnxModel(OnnxPyfunc):
    """Classifies base64-encoded images with the exported ONNX graph.

    One row per image and class, the most probable first: class_id, class_name
    and probability (an image's rows sum to 1).
    """

    predictor_class = OnnxClassifier
    columns = {
        "class_id": DataType.long,
        "class_name": DataType.string,
        "probability": DataType.double,
    }

    def records(self, prediction: Any) -> list[dict[str, Any]]:
        """Every class's probability, not only the top five."""
        names = self.predictor.names
        return prediction.to_records(names, k=len(names))
