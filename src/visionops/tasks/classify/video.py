"""Classification on video: the top class per frame, no tracks."""

from __future__ import annotations

from typing import Any

import numpy as np

from visionops.engine.video import FrameRows, VideoOutput
from visionops.tasks.classify.render import draw_classification


class ClassifyVideoOutput(VideoOutput):
    """One row per frame: the top class and its probability, written on the frame."""

    columns = ("class_id", "class_name", "probability")

    def add(
        self, index: int, time_s: float, image: np.ndarray, prediction: Any
    ) -> FrameRows:
        """The frame's top class as its row; it counts once for that class."""
        top = prediction.class_id
        name = self.names[top]
        row = (top, name, round(float(prediction.probabilities[top]), 6))
        return FrameRows([row], {name: 1})

    def draw(self, image: np.ndarray, prediction: Any, marks: Any) -> np.ndarray:
        """The top class and its probability, top left."""
        return draw_classification(image, prediction, self.names)
