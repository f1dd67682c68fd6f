"""Detection labels drawn by `draw_box`: filled, scaled with the image, readable."""

from __future__ import annotations

import numpy as np
import pytest

from visionops.data.report import PALETTE, contrast_ratio, draw_box, text_color


def _label_region(before: np.ndarray, after: np.ndarray, y1: int) -> np.ndarray:
    """The changed pixels above the box's top edge line (where the label goes)."""
    changed = (before != after).any(axis=2)
    ys, xs = np.nonzero(changed[: y1 - 4])
    assert ys.size, "no label above the box"
    return after[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


@pytest.mark.parametrize("fill", [0, 255, 128])
@pytest.mark.parametrize("cls", range(len(PALETTE)))
def test_label_is_a_filled_box_with_contrasting_text(fill: int, cls: int) -> None:
    image = np.full((480, 640, 3), fill, np.uint8)
    out = image.copy()
    draw_box(out, (100, 200, 400, 400), cls, "board 0.87")
    label = _label_region(image, out, 200).reshape(-1, 3).astype(int)
    color = np.array(PALETTE[cls])
    text = np.array(text_color(PALETTE[cls]))
    # The background is the class colour whatever the image, the text is the
    # black or white that contrasts more (AA: 4.5:1).
    assert (label == color).all(axis=1).mean() > 0.5
    assert (np.abs(label - text).max(axis=1) < 30).sum() > 30
    assert contrast_ratio(PALETTE[cls], tuple(int(v) for v in text)) >= 4.5


def test_label_grows_with_the_image() -> None:
    heights = []
    for side in (320, 1280):
        image = np.zeros((side, side, 3), np.uint8)
        out = image.copy()
        y1 = side // 2
        draw_box(out, (side // 4, y1, side // 2, side - 10), 0, "board 0.87")
        heights.append(_label_region(image, out, y1).shape[0])
    assert heights[1] > 1.5 * heights[0]


def test_label_of_a_box_at_the_top_goes_inside() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    out = image.copy()
    draw_box(out, (250, 0, 299, 120), 0, "a long label name 0.99")
    # Drawn inside the image: the label's colour shows near the top, right-aligned
    # so it is not cut off at the right edge.
    assert (out[:20] == PALETTE[0]).all(axis=2).sum() > 100
    assert (out[:20, :250] == PALETTE[0]).all(axis=2).any()
