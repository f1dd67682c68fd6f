"""Draws a classifier's top classes with their probabilities on an image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from visionops.data.report import PALETTE, text_color
from visionops.engine.onnx import _check_image, _name
from visionops.tasks.classify.onnx import Classification

FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_classification(
    image_bgr: np.ndarray,
    classification: Classification,
    names: Mapping[int, str] | Sequence[str],
    *,
    k: int = 1,
) -> np.ndarray:
    """Returns a copy of a BGR image labelled with its k most probable classes.

    One `name 0.97` line per class, highest first, stacked from the top-left
    corner, each on a solid box in the class's palette colour (the one detection
    boxes use) with black or white text, whichever has the higher WCAG contrast
    ratio, so it reads on any image. The text scales with the image's shorter
    side.

    Args:
        image_bgr: A uint8 (H, W, 3) BGR image (left unchanged).
        classification: The image's class probabilities.
        names: Class names by index (a dict or a list).
        k: How many classes to write; all of them when there are fewer.

    Returns:
        The labelled copy.

    Raises:
        ValueError: If the image is not a non-empty uint8 (H, W, 3) array.
    """
    out = _check_image(image_bgr).copy()
    scale = max(min(out.shape[:2]), 100) / 500
    thickness = max(1, round(2 * scale))
    pad = max(2, round(6 * scale))
    top = 0
    for class_id, probability in zip(*classification.top(k), strict=True):
        label = f"{_name(names, class_id)} {float(probability):.2f}"
        (width, height), baseline = cv2.getTextSize(label, FONT, scale, thickness)
        bottom = top + height + baseline + 2 * pad
        background = PALETTE[int(class_id) % len(PALETTE)]
        cv2.rectangle(out, (0, top), (width + 2 * pad, bottom - 1), background, -1)
        cv2.putText(
            out,
            label,
            (pad, top + pad + height),
            FONT,
            scale,
            text_color(background),
            thickness,
            cv2.LINE_AA,
        )
        top = bottom
    return out
