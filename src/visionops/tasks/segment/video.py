"""Segmentation on video: detection's rows and tracks, masks drawn under the boxes."""

from __future__ import annotations

from typing import Any

import numpy as np

from visionops.tasks.detect.video import TrackedVideoOutput, label_boxes
from visionops.tasks.segment.render import render_segmentation


class SegmentVideoOutput(TrackedVideoOutput):
    """A row per instance with its track id; class-coloured masks and `#id` boxes."""

    def draw(self, image: np.ndarray, prediction: Any, marks: Any) -> np.ndarray:
        """Translucent masks (no legend), then the boxes labelled with their ids."""
        out = render_segmentation(
            image, prediction.class_map(), self.names, legend=False
        )
        label_boxes(out, prediction, marks, self.names)
        return out
