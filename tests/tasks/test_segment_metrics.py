"""Semantic metrics from instance predictions, checked against hand counts."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from visionops.data.masks import BACKGROUND, IGNORE
from visionops.tasks.segment.metrics import (
    SemanticAccumulator,
    confusion_matrix,
    plot_class_iou,
    plot_confusion,
    rasterise_instances,
    semantic_metrics,
)

NAMES = ["sole", "heel", "lace", "tongue"]
B, X = BACKGROUND, IGNORE  # X: an ignored pixel

# Ground truth, 4 x 4: sole on the left (one pixel ignored), heel bottom right.
TRUTH = np.array(
    [
        [0, 0, B, B],
        [0, 0, B, B],
        [0, 0, 1, 1],
        [0, X, 1, 1],
    ],
    np.int32,
)


def _box_mask(rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((4, 4), bool)
    mask[rows, cols] = True
    return mask


# a: sole 0.9 over rows 0-1, cols 0-2; b: heel 0.8 over rows 1-3, cols 1-3 (loses
# (1,1) and (1,2) to a); c: lace 0.1 on (0,3) only.
MASKS = [
    _box_mask(slice(0, 2), slice(0, 3)),
    _box_mask(slice(1, 4), slice(1, 4)),
    _box_mask(slice(0, 1), slice(3, 4)),
]
CLASSES = [0, 1, 2]
SCORES = [0.9, 0.8, 0.1]
PREDICTED = np.array(
    [
        [0, 0, 0, 2],
        [0, 0, 0, 1],
        [B, 1, 1, 1],
        [B, 1, 1, 1],
    ],
    np.int32,
)


def test_highest_confidence_wins_a_pixel() -> None:
    # Listed in any order, the most confident instance claims shared pixels.
    order = [2, 0, 1]
    class_map = rasterise_instances(
        (4, 4),
        [CLASSES[i] for i in order],
        [SCORES[i] for i in order],
        masks=[MASKS[i] for i in order],
    )
    np.testing.assert_array_equal(class_map, PREDICTED)


def test_polygons_rasterise_like_masks() -> None:
    # Rectangles on pixel borders, nudged inside so no border falls on a centre.
    def rect(x1: float, y1: float, x2: float, y2: float) -> list[np.ndarray]:
        e = 0.1
        return [np.array([[x1 + e, y1 + e], [x2 - e, y1 + e], [x2 - e, y2 - e],
                          [x1 + e, y2 - e]])]  # fmt: skip

    polygons = [rect(0, 0, 3, 2), rect(1, 1, 4, 4), rect(3, 0, 4, 1)]
    class_map = rasterise_instances((4, 4), CLASSES, SCORES, polygons=polygons)
    np.testing.assert_array_equal(class_map, PREDICTED)


def test_iou_per_class_miou_and_accuracy_by_hand() -> None:
    confusion = confusion_matrix(PREDICTED, TRUTH, len(NAMES))
    metrics = semantic_metrics(confusion, NAMES)
    # sole: truth 7 px (the ignored pixel left out), predicted 6, both 4: 4 / 9.
    assert metrics["iou_sole"] == pytest.approx(4 / 9)
    # heel: truth 4, predicted 6 (the ignored (3,1) left out), both 4: 4 / 6.
    assert metrics["iou_heel"] == pytest.approx(4 / 6)
    # lace: predicted once, never true: 0 / 1, and not part of the mean.
    assert metrics["iou_lace"] == 0.0
    # tongue: neither true nor predicted: undefined.
    assert math.isnan(metrics["iou_tongue"])
    assert metrics["miou"] == pytest.approx((4 / 9 + 4 / 6) / 2)
    # 15 counted pixels; right: 4 sole + 4 heel + 0 of 4 background.
    assert metrics["pixel_accuracy"] == pytest.approx(8 / 15)
    assert set(metrics) == {
        "iou_sole",
        "iou_heel",
        "iou_lace",
        "iou_tongue",
        "miou",
        "pixel_accuracy",
    }
    # Rows true, columns predicted, background last.
    assert confusion.shape == (5, 5) and confusion.sum() == 15
    assert confusion[4, 0] == 2 and confusion[4, 1] == 1 and confusion[4, 2] == 1
    assert confusion[0, 4] == 2 and confusion[0, 1] == 1 and confusion[1, 1] == 4


def test_split_metrics_pool_pixels_over_images() -> None:
    accumulator = SemanticAccumulator({i: n for i, n in enumerate(NAMES)})
    accumulator.update(PREDICTED, TRUTH)
    second = np.ones((2, 2), np.int32)  # 4 heel pixels, all found
    accumulator.update(second, second)
    metrics = accumulator.metrics()
    # Pooled, not averaged per image: heel 8 / 10 (per image: 4/6 and 1).
    assert metrics["iou_heel"] == pytest.approx(8 / 10)
    assert metrics["iou_sole"] == pytest.approx(4 / 9)
    assert metrics["pixel_accuracy"] == pytest.approx(12 / 19)
    assert accumulator.confusion.sum() == 19


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="differ"):
        confusion_matrix(PREDICTED, TRUTH[:3], 4)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(PREDICTED, TRUTH, 2)
    with pytest.raises(ValueError, match="either masks or polygons"):
        rasterise_instances((4, 4), [], [])
    with pytest.raises(ValueError, match="one each per instance"):
        rasterise_instances((4, 4), [0, 1], [0.5], masks=MASKS[:2])
    no_truth = semantic_metrics(np.zeros((5, 5), np.int64), NAMES)
    assert math.isnan(no_truth["miou"]) and math.isnan(no_truth["pixel_accuracy"])


def test_charts_are_written(tmp_path: Path) -> None:
    confusion = confusion_matrix(PREDICTED, TRUTH, len(NAMES))
    metrics = semantic_metrics(confusion, NAMES)
    bars = plot_class_iou(metrics, NAMES, tmp_path / "charts" / "iou.png")
    matrix = plot_confusion(confusion, NAMES, tmp_path / "confusion.png")
    for path in (bars, matrix):
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
        assert image.std() > 10  # not a blank canvas


def test_metric_keys_are_safe_for_mlflow() -> None:
    names = ["traffic light", "car/truck"]
    truth = np.array([[0, 1]], np.int32)
    metrics = semantic_metrics(confusion_matrix(truth, truth, 2), names)
    assert metrics["iou_traffic_light"] == metrics["iou_car_truck"] == 1.0
