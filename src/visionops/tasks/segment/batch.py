"""Segmentation's batch outputs: a mask PNG of class indices per image, one CSV row
per instance, instances and pixels per class."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from visionops.data.masks import class_map_to_mask
from visionops.engine.task import BatchOutput, side_file_paths
from visionops.tasks.detect.batch import COLUMNS, box_rows, rounded_boxes
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

    def __init__(
        self, out_dir: Path, names: Sequence[str], folder: Path, files: Sequence[Path]
    ) -> None:
        super().__init__(out_dir, names, folder, files)
        self.masks = side_file_paths(files, folder, MASKS_DIR, ".png")
        self.names_by_id = dict(enumerate(self.names))

    def add(
        self, index: int, relative: str, image: np.ndarray, prediction: Any
    ) -> tuple[dict[str, Any], list[tuple]]:
        """Writes the image's mask PNG; returns its instances and CSV rows."""
        mask = self.out_dir / self.masks[index]
        mask.parent.mkdir(parents=True, exist_ok=True)
        class_map = prediction.class_map()
        png = class_map_to_mask(class_map, background=MASK_BACKGROUND)
        if not cv2.imwrite(str(mask), png):
            raise OSError(f"could not write {mask}")
        instances = _rounded(prediction.to_records(self.names_by_id))
        rows = box_rows(relative, instances)
        ids, counts = np.unique(class_map[class_map >= 0], return_counts=True)
        pixels = {
            self.names[c]: int(n)
            for c, n in zip(ids.tolist(), counts.tolist(), strict=True)
        }
        return {
            "mask": self.masks[index],
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
        instances = [i for r in records for i in r["instances"]]
        counts = Counter(i["class_name"] for i in instances)
        pixels: Counter[str] = Counter()
        for record in records:
            pixels.update(record["class_pixels"])
        confidences = [i["confidence"] for i in instances]
        mean = round(float(np.mean(confidences)), 4) if confidences else None
        with_instances = sum(1 for r in records if r["instances"])
        per_class = {name: counts.get(name, 0) for name in self.names}
        return {
            "images_with_instances": with_instances,
            "instances": len(instances),
            "instances_per_class": per_class,
            "class_pixels": {name: pixels.get(name, 0) for name in self.names},
            "mean_confidence": mean,
            "per_class": per_class,
            "figures": {
                "images with instances": with_instances,
                "instances": len(instances),
                "mean confidence": mean,
            },
        }


def _rounded(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pixels to 0.01 and confidences to 1e-5, the same in the JSON and the CSV."""
    for record in rounded_boxes(records):
        record["polygon"] = [[round(x, 2), round(y, 2)] for x, y in record["polygon"]]
    return records
