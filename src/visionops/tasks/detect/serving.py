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
    track_id: int | None = None


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
    track=True,
)


def answer(
    prediction: Any, names: Mapping[int, str], track_ids: Any = None
) -> dict[str, Any]:
    """The boxes (`OnnxDetections.to_records`), with their track ids when the
    request tracked (0: in no confirmed track yet), and the counts per class."""
    return {
        "detections": with_tracks(prediction.to_records(names), track_ids),
        "counts": prediction.counts(names),
    }


def with_tracks(records: list[dict], track_ids: Any) -> list[dict]:
    """Each record with its `track_id` (None: untracked), when ids were given."""
    if track_ids is not None:
        for record, track in zip(records, track_ids, strict=True):
            record["track_id"] = int(track) or None
    return records
