"""Segmentation overlays: blended class colours and an area legend."""

from __future__ import annotations

import numpy as np
import pytest

from visionops.data.masks import BACKGROUND, IGNORE
from visionops.tasks.segment.render import class_areas, class_color, render_segmentation

NAMES = {0: "road", 1: "car", 2: "tree"}


def _scene() -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((200, 300, 3), np.uint8)
    image[:] = (40, 80, 120)
    class_map = np.full((200, 300), BACKGROUND, np.int32)
    class_map[100:200, :] = 0  # road: half the image
    class_map[120:170, 200:280] = 1  # car: 50 x 80 = 4000 px
    class_map[0:10, 290:300] = IGNORE
    return image, class_map


def test_class_pixels_are_blended_and_the_rest_left_alone() -> None:
    image, class_map = _scene()
    before = image.copy()
    out = render_segmentation(image, class_map, NAMES, alpha=0.25)
    np.testing.assert_array_equal(image, before)  # the input is not modified
    assert out.shape == image.shape and out.dtype == np.uint8

    road = np.array(class_color(0), np.float64)
    car = np.array(class_color(1), np.float64)
    pixel = np.array((40, 80, 120), np.float64)
    expected_road = np.rint(0.75 * pixel + 0.25 * road)
    expected_car = np.rint(0.75 * pixel + 0.25 * car)
    np.testing.assert_array_equal(out[190, 150], expected_road)
    np.testing.assert_array_equal(out[150, 240], expected_car)
    assert not np.array_equal(expected_road, expected_car)
    # Background and ignored pixels away from the legend keep their colour.
    np.testing.assert_array_equal(out[60, 250], pixel)
    np.testing.assert_array_equal(out[5, 295], pixel)


def test_legend_lists_present_classes_with_their_area() -> None:
    image, class_map = _scene()
    areas = class_areas(class_map, NAMES)
    assert list(areas) == ["road", "car"]  # tree is absent
    assert areas["car"] == pytest.approx(4000 / 60000)
    assert areas["road"] == pytest.approx((30000 - 4000) / 60000)

    plain = render_segmentation(image, class_map, NAMES, legend=False)
    with_legend = render_segmentation(image, class_map, NAMES)
    changed = np.any(plain != with_legend, axis=2)
    rows, cols = np.nonzero(changed)
    # The legend sits in the top-left corner, two rows high, on a dark box.
    assert changed.any() and rows.max() < 60 and cols.max() < 200
    assert (with_legend[changed] != 0).any()
    # Each present class has its colour swatch in the legend.
    legend = with_legend[: rows.max() + 1, : cols.max() + 1].reshape(-1, 3)
    for class_id in (0, 1):
        assert (legend == class_color(class_id)).all(axis=1).any()
    assert not (legend == class_color(2)).all(axis=1).any()


def test_empty_prediction_and_bad_inputs() -> None:
    image, _ = _scene()
    empty = np.full(image.shape[:2], BACKGROUND, np.int32)
    np.testing.assert_array_equal(render_segmentation(image, empty, NAMES), image)
    with pytest.raises(ValueError, match="does not match"):
        render_segmentation(image, empty[:10], NAMES)
    with pytest.raises(ValueError, match="alpha"):
        render_segmentation(image, empty, NAMES, alpha=1.5)
