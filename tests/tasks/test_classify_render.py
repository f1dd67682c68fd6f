"""The classification label drawn on an image: where it goes and how it reads."""

from __future__ import annotations

import numpy as np
import pytest

from visionops.tasks.classify.onnx import Classification
from visionops.tasks.classify.render import draw_classification

NAMES = ["NORMAL", "PNEUMONIA", "COVID"]
RESULT = Classification(np.array([0.15, 0.8, 0.05], np.float32))


def _noise(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)


def _changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int]:
    """The (height, width) of the box holding every changed pixel, which must
    start at the top-left corner."""
    ys, xs = np.nonzero((before != after).any(axis=2))
    assert ys.size, "nothing was drawn"
    assert ys.min() == 0 and xs.min() == 0
    return int(ys.max()) + 1, int(xs.max()) + 1


def test_label_is_drawn_top_left_and_nowhere_else() -> None:
    image = _noise(400, 600)
    out = draw_classification(image, RESULT, NAMES)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, _noise(400, 600))  # the input is left alone
    height, width = _changed_box(image, out)
    assert 10 < height < 400 * 0.2 and 40 < width < 600 * 0.8
    # The label box is filled: (almost) every pixel in it changed.
    changed = (image[:height, :width] != out[:height, :width]).any(axis=2)
    assert changed.mean() > 0.95
    np.testing.assert_array_equal(out[height:], image[height:])
    np.testing.assert_array_equal(out[:, width:], image[:, width:])


def test_text_contrasts_with_its_box() -> None:
    image = np.full((300, 300, 3), 255, np.uint8)
    out = draw_classification(image, RESULT, NAMES)
    height, width = _changed_box(image, out)
    luma = out[:height, :width].astype(float) @ [0.114, 0.587, 0.299]
    # Box and text: two clearly different brightness levels.
    assert np.percentile(luma, 95) - np.percentile(luma, 5) > 100


def test_top_k_stacks_one_line_per_class() -> None:
    image = _noise(400, 600)
    one, _ = _changed_box(image, draw_classification(image, RESULT, NAMES, k=1))
    three, _ = _changed_box(image, draw_classification(image, RESULT, NAMES, k=3))
    assert three == pytest.approx(3 * one, abs=3)
    # k larger than the number of classes draws every class once.
    everything, _ = _changed_box(image, draw_classification(image, RESULT, NAMES, k=9))
    assert everything == three


def test_text_grows_with_the_image() -> None:
    small, _ = _changed_box(
        _noise(200, 200), draw_classification(_noise(200, 200), RESULT, NAMES)
    )
    large, _ = _changed_box(
        _noise(1200, 1600), draw_classification(_noise(1200, 1600), RESULT, NAMES)
    )
    assert large > 3 * small


def test_a_tiny_image_still_gets_a_label() -> None:
    image = _noise(24, 32)
    out = draw_classification(image, RESULT, NAMES)
    assert out.shape == image.shape and not np.array_equal(out, image)


@pytest.mark.parametrize(
    "image",
    [np.zeros((32, 32), np.uint8), np.zeros((32, 32, 4), np.uint8), None],
)
def test_bad_images_are_refused(image) -> None:
    with pytest.raises(ValueError, match="image"):
        draw_classification(image, RESULT, NAMES)


def test_text_on_red_is_black_by_contrast_ratio() -> None:
    # Class 1 of this result is drawn on PALETTE[1]; class 0 (#ff3838) is where
    # white text read at 3.6:1: check the colour each gets.
    from visionops.data.report import PALETTE, contrast_ratio, text_color

    red = PALETTE[0]  # BGR of #ff3838
    assert text_color(red) == (0, 0, 0)
    assert contrast_ratio(red, (255, 255, 255)) == pytest.approx(3.6, abs=0.05)
    assert contrast_ratio(red, (0, 0, 0)) > 4.5
    red_first = Classification(np.array([0.9, 0.05, 0.05], np.float32))
    image = np.full((300, 300, 3), 128, np.uint8)
    out = draw_classification(image, red_first, NAMES)
    height, width = _changed_box(image, out)
    label = out[:height, :width].reshape(-1, 3)
    assert (label == red).all(axis=1).mean() > 0.5  # the filled box
    assert (label.max(axis=1) < 40).sum() > 20  # dark text on it
    assert not (label.min(axis=1) > 215).any()  # no white text
