"""Classification's labelling batch: each image in its predicted class's folder."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from visionops.engine.review import PreLabel, ReviewExport
from visionops.tasks.classify.layout import class_folder

# One `train` subset: what CVAT's Ultralytics YOLO Classification import reads.
SUBSET = "train"


class ClassifyReview(ReviewExport):
    """`train/<class>/<image>`: the folder is the pre-label, and moving an image
    to another class's folder corrects it.

    The class folders sit in a `train/` folder so that `review.csv` beside it
    does not hide them from the class-folder source (which allows no loose file
    beside class folders); CVAT imports the folder zipped as Ultralytics YOLO
    Classification.
    """

    @staticmethod
    def prelabels(predictions: Mapping[str, Any]) -> list[PreLabel]:
        """The most probable class of the answer (none for an empty answer)."""
        ranked = sorted(
            predictions.get("predictions") or [],
            key=lambda p: float(p["probability"]),
            reverse=True,
        )
        return [
            PreLabel(
                class_name=str(p["class_name"]),
                confidence=float(p["probability"]),
                class_id=int(p["class_id"]),
            )
            for p in ranked[:1]
        ]

    def add(
        self,
        image: Path,
        name: str,
        prelabels: Sequence[PreLabel],
        size: tuple[int, int],
    ) -> Path:
        """Copies the image into its predicted class's folder."""
        if not prelabels:
            raise ValueError("the answer names no class")
        folder = class_folder(prelabels[0].class_name)
        placed = self.root / SUBSET / folder / name
        # A copy: the store's image stays as it was whatever the labeller does.
        placed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(image, placed)
        return placed
