"""A classification's per-image figures: top-1 probability, margin, top class."""

from __future__ import annotations

from collections.abc import Mapping

from visionops.tasks.classify.onnx import Classification


def prediction_features(
    prediction: Classification, names: Mapping[int, str]
) -> dict[str, float | str]:
    """The top-1 probability (`confidence`), its margin over the second, the class."""
    _, probabilities = prediction.top(2)
    second = float(probabilities[1]) if len(probabilities) > 1 else 0.0
    return {
        "confidence": prediction.probability,
        "margin": prediction.probability - second,
        "top_class": str(names[prediction.class_id]),
    }
