"""A segmentation's per-image figures: detection's, plus pixel fraction per class."""

from __future__ import annotations

from collections.abc import Mapping

from visionops.tasks.detect.features import prediction_features as box_features
from visionops.tasks.segment.onnx import Instances


def prediction_features(
    prediction: Instances, names: Mapping[int, str]
) -> dict[str, float | str]:
    """Detection's figures and, per class, the share of the image's pixels it covers."""
    features = box_features(prediction, names)
    height, width = prediction.shape
    area = max(height * width, 1)
    pixels = prediction.class_pixels(names) if len(prediction) else {}
    for name in names.values():
        features[f"pixels_{name}"] = pixels.get(name, 0) / area
    return features
