"""YOLO polygon lines, mask images and class maps convert into each other."""

from __future__ import annotations

import numpy as np
import pytest

from visionops.data.masks import (
    BACKGROUND,
    IGNORE,
    class_map_to_instances,
    class_map_to_mask,
    class_map_to_polygon_lines,
    fill_polygons,
    mask_polygons,
    mask_problem,
    mask_to_class_map,
    mask_to_instances,
    parse_polygon_line,
    polygon_lines_to_class_map,
    polygon_problem,
)


def test_polygon_line_paints_the_pixels_whose_centres_it_covers() -> None:
    # Columns 0-2 of a 4 (high) x 6 (wide) image (x up to 2.7 px), then class 2
    # over row 0 (y up to 0.8 px): centres at 2.5 and 0.5 are in, 3.5 and 1.5 out.
    lines = ["0 0 0 0.45 0 0.45 1 0 1", "", "2 0 0 1 0 1 0.2 0 0.2"]
    class_map = polygon_lines_to_class_map(lines, (4, 6))
    expected = np.full((4, 6), BACKGROUND)
    expected[:, :3] = 0
    expected[0, :] = 2
    np.testing.assert_array_equal(class_map, expected)
    assert class_map.dtype == np.int32


def test_parse_polygon_line_rejects_bad_lines() -> None:
    class_id, points = parse_polygon_line("3 0.1 0.2 0.3 0.4 0.5 0.6")
    assert class_id == 3 and points.shape == (3, 2) and points[1, 1] == 0.4
    for bad in ("0 0.1 0.2 0.3", "0.5 0 0 1 1 0 1", "a 0 0 1 1 0 1", "1"):
        with pytest.raises(ValueError):
            parse_polygon_line(bad)


def test_two_regions_of_one_class_give_two_polygons_and_round_trip() -> None:
    class_map = np.full((20, 30), BACKGROUND, np.int32)
    class_map[2:8, 3:10] = 1  # 6 x 7 = 42 px
    class_map[12:18, 15:27] = 1  # 6 x 12 = 72 px
    class_map[12:15, 2:5] = 0  # another class
    conversion = class_map_to_instances(class_map)
    by_class = [(i.class_id, i.area) for i in conversion.instances]
    assert sorted(by_class) == [(0, 9), (1, 42), (1, 72)]
    assert conversion.dropped == 0 and conversion.holes == 0

    lines, dropped = class_map_to_polygon_lines(class_map)
    assert dropped == 0 and len(lines) == 3
    assert sum(line.startswith("1 ") for line in lines) == 2
    values = np.array([float(v) for line in lines for v in line.split()[1:]])
    assert (values >= 0).all() and (values <= 1).all()
    # The outlines run through border pixel centres: painted back, they are exact.
    np.testing.assert_array_equal(
        polygon_lines_to_class_map(lines, (20, 30)), class_map
    )


def test_holes_are_covered_by_the_polygon_and_kept_in_the_class_map() -> None:
    mask = np.zeros((12, 12), np.uint8)
    mask[1:10, 1:10] = 1
    mask[4:6, 4:6] = 0  # a 2 x 2 hole
    conversion, class_map = mask_to_instances(mask, 2, background=0)
    assert len(conversion.instances) == 1
    instance = conversion.instances[0]
    assert instance.area == 81 - 4 and instance.holes == 1 and conversion.holes == 1
    # The training polygon covers the hole; the evaluation map keeps it.
    painted = fill_polygons(np.zeros((12, 12), np.int32), [instance.polygon], 1)
    assert painted[4:6, 4:6].all() and painted.sum() == 81
    assert (class_map[4:6, 4:6] == BACKGROUND).all() and (class_map == 1).sum() == 77


def test_tiny_and_thin_regions_are_dropped_and_counted() -> None:
    class_map = np.full((20, 20), BACKGROUND, np.int32)
    class_map[1:6, 1:6] = 0  # 25 px: kept
    class_map[10:12, 10:12] = 0  # 4 px: below min_area
    class_map[15, 15] = 1  # 1 px: below min_area
    class_map[18, 2:19] = 1  # a one-pixel line, 17 px: no area to outline
    conversion = class_map_to_instances(class_map, min_area=5)
    assert [(i.class_id, i.area) for i in conversion.instances] == [(0, 25)]
    assert conversion.dropped == 3


def test_mask_image_values_ignore_and_background() -> None:
    mask = np.array([[0, 1, 2], [255, 2, 0]], np.uint8)
    class_map = mask_to_class_map(mask, 3, ignore=255, background=0)
    np.testing.assert_array_equal(
        class_map, [[BACKGROUND, 1, 2], [IGNORE, 2, BACKGROUND]]
    )
    # Without a background value, 0 is a class like any other.
    assert mask_to_class_map(mask, 3)[0, 0] == 0
    back = class_map_to_mask(class_map, ignore=255, background=0)
    np.testing.assert_array_equal(back, mask)
    with pytest.raises(ValueError, match=r"\[7\] are outside the 3 classes"):
        mask_to_class_map(np.array([[7, 1]], np.uint8), 3)


def test_mask_problems_for_validation() -> None:
    mask = np.zeros((4, 5), np.uint8)
    assert mask_problem(mask, 2, image_shape=(4, 5, 3)) is None
    assert "differs from its image" in mask_problem(mask, 2, image_shape=(5, 4, 3))
    assert "one channel" in mask_problem(np.zeros((4, 5, 3), np.uint8), 2)
    mask[0, 0] = 9
    assert "outside the 2 classes" in mask_problem(mask, 2)
    mask[0, 0] = 255
    assert mask_problem(mask, 2, ignore=255) is None


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        ([0, 0, 1, 0, 1, 1, 0, 1], None),
        ([0.1, 0.1, 0.9, 0.2], "fewer than 3 points"),
        ([0, 0, 1, 1, 1, 1, 0, 0], "fewer than 3 points"),  # repeats merged
        ([0, 0, 0.5, 0.5, 1, 1], "zero area"),
        ([0.2, 0.2, 0.2, 0.2, 0.2, 0.2], "fewer than 3 points"),
        ([0, 0, 1, 1, 1, 0, 0, 1], "self-intersecting"),  # a bow tie
        ([0, 0, 4, 0, 4, 4, 2, 4, 2, 2, 1, 2, 1, 4, 0, 4], None),  # concave
    ],
)
def test_polygon_problem(points: list[float], reason: str | None) -> None:
    assert polygon_problem(points) == reason


def test_mask_outlines_pass_the_polygon_checks() -> None:
    # Two blobs joined by a diagonal pixel and a one-pixel-wide tail: the outline
    # touches itself and runs back along itself, but never crosses.
    mask = np.zeros((12, 16), np.uint8)
    mask[1:5, 1:5] = 1
    mask[5, 5] = 1
    mask[6:10, 6:10] = 1
    mask[7, 10:15] = 1
    outlines = mask_polygons(mask)
    assert len(outlines) == 1
    assert polygon_problem(outlines[0]) is None
    painted = fill_polygons(np.zeros(mask.shape, np.int32), outlines, 1)
    np.testing.assert_array_equal(painted, mask)
