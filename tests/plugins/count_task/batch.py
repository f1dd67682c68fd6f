"""Counting's batch outputs: one `predictions.csv` row per image, objects per class."""

from __future__ import annotations

from collections import Counter
from typing import Any

import cv2
import numpy as np

from visionops.engine.task import BatchOutput


class CountBatchOutput(BatchOutput):
    """`image, objects` rows; each image's counts by class in `predictions.json`."""

    columns = ("image", "objects")
    counts_title = "Objects per class"

    def add(
        self, index: int, relative: str, image: np.ndarray, prediction: Any
    ) -> tuple[dict[str, Any], list[tuple]]:
        """The image's number of objects and its counts by class."""
        counts = prediction.counts(dict(enumerate(self.names)))
        objects = len(prediction.boxes)
        return {"objects": objects, "counts": counts}, [(relative, objects)]

    def draw(
        self, thumbnail: np.ndarray, prediction: Any, shape: tuple[int, ...]
    ) -> np.ndarray:
        """The count, written in the thumbnail's corner."""
        cv2.putText(
            thumbnail,
            str(len(prediction.boxes)),
            (6, 28),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.0,
            (255, 255, 255),
            2,
        )
        return thumbnail

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Objects in all, the most in one image, objects per class."""
        counts: Counter[str] = Counter()
        for record in records:
            counts.update(record["counts"])
        objects = sum(r["objects"] for r in records)
        most = max((r["objects"] for r in records), default=0)
        per_class = {name: counts.get(name, 0) for name in self.names}
        return {
            "objects": objects,
            "most_objects": most,
            "per_class": per_class,
            "figures": {"objects": objects, "most in one image": most},
        }
