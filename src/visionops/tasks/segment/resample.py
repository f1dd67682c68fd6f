"""Segmentation metrics per image: mask and box mAP, and IoU from pixel counts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from visionops.engine.bootstrap import MetricFn, PerImage, counts
from visionops.tasks.detect.resample import map_metric
from visionops.tasks.segment.metrics import semantic_metrics

# Instance metrics: (the matches they read, AP50 only).
INSTANCE = {
    "mask_map50_95": ("tp_m", False),
    "mask_map50": ("tp_m", True),
    "box_map50_95": ("tp", False),
    "box_map50": ("tp", True),
}


def segment_metric(
    results: PerImage, metric: str, class_names: Sequence[str]
) -> MetricFn:
    """A segmentation test metric on resamples of the test images.

    Mask and box mAP come from the kept matches (as detection's); `miou`,
    `pixel_accuracy` and `iou_<class>` from the resample's summed pixel
    confusion matrices, through `semantic_metrics`.

    Raises:
        ValueError: Not a segmentation metric.
    """
    if metric in INSTANCE:
        field, iou50_only = INSTANCE[metric]
        return map_metric(results, field, iou50_only)
    names = list(class_names)
    if metric not in semantic_metrics(np.zeros((len(names) + 1,) * 2), names):
        raise ValueError(f"{metric!r} is not a segmentation metric")
    pixels = np.stack(results.arrays("confusion", np.int64))
    size = len(names) + 1

    def metric_of(indices: np.ndarray) -> np.ndarray:
        summed = counts(indices, len(pixels)) @ pixels
        return np.array(
            [semantic_metrics(m.reshape(size, size), names)[metric] for m in summed]
        )

    return metric_of
