"""A detection's per-image figures for drift and records: counts and confidences."""

from __future__ import annotations

from collections.abc import Mapping

from visionops.tasks.detect.onnx import Detections

NONE = "none"  # the top class of an image with nothing found


def prediction_features(
    prediction: Detections, names: Mapping[int, str]
) -> dict[str, float | str]:
    """Detections, boxes per class, the highest and mean confidence, the top class.

    `confidence` is the highest box confidence (0 with no box): the image's
    confidence, which the low-confidence share reads.
    """
    scores = prediction.scores
    counts = prediction.counts(names)
    features: dict[str, float | str] = {
        "detections": float(len(prediction)),
        "confidence": float(scores.max()) if len(scores) else 0.0,
        "confidence_mean": float(scores.mean()) if len(scores) else 0.0,
        "top_class": str(names[int(prediction.class_ids[0])]) if len(scores) else NONE,
    }
    for name in names.values():
        features[f"count_{name}"] = float(counts.get(name, 0))
    return features
