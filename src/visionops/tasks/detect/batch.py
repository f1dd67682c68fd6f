"""Detection's batch outputs: YOLO label files, one CSV row per box, boxes per class."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from visionops.data.report import draw_boxes
from visionops.engine.task import BatchOutput

LABELS_DIR = "labels"
COLUMNS = ("image", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2")


def yolo_lines(detections: Any, width: int, height: int) -> str:
    """Detections as YOLO txt lines: `cls cx cy w h conf`, normalised to the image."""
    lines = []
    for (x1, y1, x2, y2), score, cls in zip(
        detections.boxes.tolist(),
        detections.scores.tolist(),
        detections.class_ids.tolist(),
        strict=True,
    ):
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        w, h = (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f} {score:.5f}")
    return "".join(f"{line}\n" for line in lines)


def box_rows(relative: str, records: list[dict[str, Any]]) -> list[tuple]:
    """`predictions.csv` rows (`COLUMNS`) of an image's records with a pixel box."""
    return [
        (relative, r["class_id"], r["class_name"], r["confidence"])
        + tuple(r["box"].values())
        for r in records
    ]


class DetectBatchOutput(BatchOutput):
    """`labels/<image>.txt` (YOLO `cls cx cy w h conf`; empty without boxes) and
    one `predictions.csv` row per box, in pixels."""

    columns = COLUMNS
    counts_title = "Boxes per class"
    side_files = (LABELS_DIR, ".txt")

    def add(
        self, index: int, relative: str, image: np.ndarray, prediction: Any
    ) -> tuple[dict[str, Any], list[tuple]]:
        """Writes the image's label file; returns its boxes and CSV rows."""
        height, width = image.shape[:2]
        self.side_file(index).write_text(yolo_lines(prediction, width, height))
        boxes = rounded_boxes(prediction.to_records(dict(enumerate(self.names))))
        rows = box_rows(relative, boxes)
        return {"label": self.side_paths[index], "detections": boxes}, rows

    def draw(
        self, thumbnail: np.ndarray, prediction: Any, shape: tuple[int, ...]
    ) -> np.ndarray:
        """Boxes (no confidence) in the class colours."""
        text = yolo_lines(prediction, shape[1], shape[0])
        # Predicted lines end with a confidence: `cls cx cy w h conf` is a box,
        # while draw_boxes reads more than 5 values as a polygon.
        boxes = "\n".join(" ".join(line.split()[:5]) for line in text.splitlines())
        draw_boxes(thumbnail, boxes, self.names)
        return thumbnail

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Boxes, images with boxes, boxes per class, mean confidence."""
        return box_summary(records, "detections", "boxes", self.names)


def box_summary(
    records: list[dict[str, Any]], key: str, noun: str, names: Sequence[str]
) -> dict[str, Any]:
    """The summary figures of records holding a list of boxed objects under `key`.

    Args:
        records: The images' JSON records.
        key: Where a record keeps its objects (`detections`).
        noun: What the objects are called in the summary keys (`boxes`).
        names: The class names, in index order.

    Returns:
        `images_with_<noun>`, `<noun>`, `<noun>_per_class`, `mean_confidence`
        and the `per_class` and `figures` every summary has.
    """
    objects = [o for r in records for o in r[key]]
    counts = Counter(o["class_name"] for o in objects)
    confidences = [o["confidence"] for o in objects]
    mean = round(float(np.mean(confidences)), 4) if confidences else None
    with_objects = sum(1 for r in records if r[key])
    per_class = {name: counts.get(name, 0) for name in names}
    return {
        f"images_with_{noun}": with_objects,
        noun: len(objects),
        f"{noun}_per_class": per_class,
        "mean_confidence": mean,
        "per_class": per_class,
        "figures": {
            f"images with {noun}": with_objects,
            noun: len(objects),
            "mean confidence": mean,
        },
    }


def rounded_boxes(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pixels to 0.01 and confidences to 1e-5, the same in the JSON and the CSV."""
    for record in records:
        record["confidence"] = round(record["confidence"], 5)
        record["box"] = {k: round(v, 2) for k, v in record["box"].items()}
    return records
