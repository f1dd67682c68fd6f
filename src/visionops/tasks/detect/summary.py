"""Detection in a prediction record: objects and their confidences per class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from visionops.engine.onnx import _name


def summary(prediction: Any, names: Mapping[int, str]) -> dict[str, Any]:
    """The boxes (or instances) found: how many, per class, and their confidences.

    Args:
        prediction: `Detections` (a segmenter's `Instances` too), highest first.
        names: Class names by index.

    Returns:
        `{"count": n, "classes": {name: n}, "confidences": {name: [c, ...]}}`,
        confidences rounded to 4 digits, highest first.
    """
    classes: dict[str, int] = {}
    confidences: dict[str, list[float]] = {}
    for score, class_id in zip(
        prediction.scores.tolist(), prediction.class_ids.tolist(), strict=True
    ):
        name = _name(names, class_id)
        classes[name] = classes.get(name, 0) + 1
        confidences.setdefault(name, []).append(round(score, 4))
    return {"count": len(prediction), "classes": classes, "confidences": confidences}
