"""Classification's batch outputs: one CSV row per image with every class's
probability, the top class, images per top class."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from visionops.engine.task import BatchOutput
from visionops.tasks.classify.render import draw_classification

PROBABILITY_PREFIX = "p_"  # `p_<class name>` columns of predictions.csv


class ClassifyBatchOutput(BatchOutput):
    """`predictions.csv`: `image, class_id, class_name, probability` (the top
    class) and `p_<class>` per class; the JSON keeps every probability too."""

    counts_title = "Images per top class"

    @property
    def columns(self) -> tuple[str, ...]:  # type: ignore[override]
        """The top class, then one probability column per class."""
        per_class = tuple(f"{PROBABILITY_PREFIX}{name}" for name in self.names)
        return ("image", "class_id", "class_name", "probability", *per_class)

    def add(
        self, index: int, relative: str, image: np.ndarray, prediction: Any
    ) -> tuple[dict[str, Any], list[tuple]]:
        """The top class and all probabilities (to 1e-6) as one row."""
        probabilities = [round(float(p), 6) for p in prediction.probabilities]
        top = prediction.class_id
        record = {
            "class_id": top,
            "class_name": self.names[top],
            "probability": probabilities[top],
            "probabilities": dict(zip(self.names, probabilities, strict=True)),
        }
        row = (relative, top, self.names[top], probabilities[top], *probabilities)
        return record, [row]

    def draw(
        self, thumbnail: np.ndarray, prediction: Any, shape: tuple[int, ...]
    ) -> np.ndarray:
        """The top class and its probability written on the thumbnail."""
        return draw_classification(thumbnail, prediction, self.names)

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Images per top class and the mean top probability."""
        counts = Counter(r["class_name"] for r in records)
        top = [r["probability"] for r in records]
        mean = round(float(np.mean(top)), 4) if top else None
        per_class = {name: counts.get(name, 0) for name in self.names}
        return {
            "images_per_class": per_class,
            "mean_probability": mean,
            "per_class": per_class,
            "figures": {"mean top probability": mean},
        }
