"""Detections drawn on an image: boxes and `name conf` labels (`/render`, reports)."""

from __future__ import annotations

from typing import Any

import numpy as np

from visionops.data.report import draw_box


def draw_detections(
    frame: np.ndarray, detections: Any, names: dict[int, str]
) -> np.ndarray:
    """Returns a copy of a BGR frame with pixel boxes and `name conf` labels drawn."""
    out = frame.copy()
    for box, score, cls in zip(
        detections.boxes, detections.scores, detections.class_ids, strict=True
    ):
        label = f"{names.get(int(cls), str(cls))} {score:.2f}"
        draw_box(out, tuple(int(v) for v in box), int(cls), label)
    return out
