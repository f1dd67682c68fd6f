"""Detection in the service: `/detect` and `/detect_batch` answer boxes and counts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from visionops.engine.task import Serving


class Box(BaseModel):
    """A box in pixels of the uploaded image."""

    x1: float
    y1: float
    x2: float
    y2: float


class Detection(BaseModel):
    """One detected object."""

    class_id: int
    class_name: str
    confidence: float
    box: Box


class DetectAnswer(BaseModel):
    """The objects found (box, class, confidence) and how many per class."""

    detections: list[Detection]
    counts: dict[str, int]


SERVING = Serving(
    endpoint="detect",
    response=DetectAnswer,
    view=Path(__file__).with_name("view.js"),
    blur_faces=True,
    batch=True,
)


def answer(prediction: Any, names: Mapping[int, str]) -> dict[str, Any]:
    """The boxes (`OnnxDetections.to_records`) and the counts per class."""
    return {
        "detections": prediction.to_records(names),
        "counts": prediction.counts(names),
    }
