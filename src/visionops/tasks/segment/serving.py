"""Segmentation in the service: `/segment` answers instances and pixels per class."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from visionops.engine.task import Serving
from visionops.tasks.detect.serving import Box, with_tracks


class SegmentInstance(BaseModel):
    """One segmented object: its class, box and outline in image pixels."""

    class_id: int
    class_name: str
    confidence: float
    box: Box
    polygon: list[list[float]]
    track_id: int | None = None


class SegmentAnswer(BaseModel):
    """The instances (class, box, outline polygon `[[x, y], ...]`) and the pixels
    of each class in the class map where the most confident instance wins a pixel."""

    instances: list[SegmentInstance]
    class_pixels: dict[str, int]


SERVING = Serving(
    endpoint="segment",
    response=SegmentAnswer,
    view=Path(__file__).with_name("view.js"),
    track=True,
)


def answer(
    prediction: Any, names: Mapping[int, str], track_ids: Any = None
) -> dict[str, Any]:
    """The instances with their outline (`Segmentation.to_records`) and track ids
    when the request tracked, and the pixels of each class."""
    return {
        "instances": with_tracks(prediction.to_records(names), track_ids),
        "class_pixels": prediction.class_pixels(names),
    }
