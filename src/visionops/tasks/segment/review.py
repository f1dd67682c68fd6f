"""Segmentation's labelling batch: YOLO-seg polygons beside the images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from visionops.engine.review import PreLabel, normalised
from visionops.tasks.detect.review import DetectReview


class SegmentReview(DetectReview):
    """As detection's batch, each object's outline as a YOLO-seg line
    (`class x1 y1 x2 y2 ...`, normalised); an outline of fewer than three
    points becomes its box's four corners."""

    objects_key = "instances"

    @staticmethod
    def _polygon(obj: Mapping[str, Any]) -> tuple[tuple[float, float], ...] | None:
        points = tuple((float(x), float(y)) for x, y in obj.get("polygon") or [])
        return points if len(points) >= 3 else None

    def line(self, prelabel: PreLabel, size: tuple[int, int]) -> str:
        """One YOLO-seg line: class id, then the outline's points, normalised."""
        points = prelabel.polygon
        if points is None:
            assert prelabel.box is not None
            x1, y1, x2, y2 = prelabel.box
            points = ((x1, y1), (x2, y1), (x2, y2), (x1, y2))
        coords = " ".join(
            f"{x:.6f} {y:.6f}"
            for x, y in (normalised(px, py, size) for px, py in points)
        )
        return f"{self.class_id(prelabel.class_name)} {coords}"
