"""Segmentation's batch outputs: a mask PNG of class indices per image, one CSV row
per instance, instances and pixels per class."""

from __future__ import annotations

from collections import Counter
from typing import Any

import cv2
import numpy as np

from visionops.data.masks import class_map_to_mask
from visionops.engine.task import BatchOutput
from visionops.tasks.detect.batch import (
    COLUMNS,
    box_rows,
    box_summary,
    rounded_boxes,
)
from visionops.tasks.segment.render import render_segmentation

MASKS_DIR = "masks"
# A predicted mask's pixels no instance claims (uint8 class indices below it).
MASK_BACKGROUND = 255


class SegmentBatchOutput(BatchOutput):
    """`masks/<image>.png` (uint8, pixel = class index, 255 = no instance; the
    most confident instance wins a pixel), one `predictions.csv` row per
    instance (box in pixels); the JSON adds each outline and the pixels per
    class."""

    columns = COLUMNS
    counts_title = "Instances per class"
    side_files = (MASKS_DIR, ".png")

    def add(
        self, index: int, relative: str, image: np.ndarray, prediction: Any
    ) -> tuple[dict[str, Any], list[tuple]]:
        """Writes the image's mask PNG; returns its instances and CSV rows."""
        mask = self.side_file(index)
        class_map = prediction.class_map()
        png = class_map_to_mask(class_map, background=MASK_BACKGROUND)
        if not cv2.imwrite(str(mask), png):
            raise OSError(f"could not write {mask}")
        instances = _rounded(prediction.to_records(dict(enumerate(self.names))))
        rows = box_rows(relative, instances)
        ids, counts = np.unique(class_map[class_map >= 0], return_counts=True)
        pixels = {
            self.names[c]: int(n)
            for c, n in zip(ids.tolist(), counts.tolist(), strict=True)
        }
        return {
            "mask": self.side_paths[index],
            "instances": instances,
            "class_pixels": pixels,
        }, rows

    def draw(
        self, thumbnail: np.ndarray, prediction: Any, shape: tuple[int, ...]
    ) -> np.ndarray:
        """Translucent class-coloured masks, scaled to the thumbnail."""
        small = cv2.resize(
            prediction.class_map(),
            (thumbnail.shape[1], thumbnail.shape[0]),
            interpolation=cv2.INTER_NEAREST,
        )
        return render_segmentation(thumbnail, small, self.names, legend=False)

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Instances, images with instances, per class instances and pixels."""
        pixels: Counter[str] = Counter()
        for record in records:
            pixels.update(record["class_pixels"])
        return {
            **box_summary(records, "instances", "instances", self.names),
            "class_pixels": {name: pixels.get(name, 0) for name in self.names},
        }


def _rounded(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pixels to 0.01 and confidences to 1e-5, the same in the JSON and the CSV."""
    for record in rounded_boxes(records):
        record["polygon"] = [[round(x, 2), round(y, 2)] for x, y in record["polygon"]]
    return records
