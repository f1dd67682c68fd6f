"""Segmentation overlays: translucent class-coloured masks and an area legend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from visionops.data.report import PALETTE
from visionops.engine.onnx import _name


def class_color(class_id: int) -> tuple[int, int, int]:
    """The BGR colour of a class, the one its boxes are drawn in."""
    return PALETTE[int(class_id) % len(PALETTE)]


def class_areas(
    class_map: np.ndarray, names: Sequence[str] | Mapping[int, str]
) -> dict[str, float]:
    """Returns the fraction of the image each present class covers.

    Args:
        class_map: An int32 (H, W) class map (negative values are no class).
        names: Class names by id.

    Returns:
        `{name: fraction}` for classes with at least one pixel, in id order.
    """
    ids, counts = np.unique(class_map[class_map >= 0], return_counts=True)
    total = class_map.size or 1
    return {
        _name(names, c): n / total
        for c, n in zip(ids.tolist(), counts.tolist(), strict=True)
    }


def render_segmentation(
    image_bgr: np.ndarray,
    class_map: np.ndarray,
    names: Sequence[str] | Mapping[int, str],
    *,
    alpha: float = 0.5,
    legend: bool = True,
) -> np.ndarray:
    """Draws a class map over an image, with a legend of per-class area.

    Every pixel of class c becomes `(1 - alpha) * pixel + alpha * colour(c)`
    (rounded); background and ignored pixels are left as they are. The legend,
    in the top-left corner, lists each present class: its colour, its name and
    the percentage of the image it covers.

    Args:
        image_bgr: A uint8 (H, W, 3) BGR image; not modified.
        class_map: An int32 (H, W) class map of the same size (e.g.
            `Instances.class_map()`).
        names: Class names by id.
        alpha: The opacity of the class colours, 0..1.
        legend: Draw the legend.

    Returns:
        A new uint8 (H, W, 3) BGR image.

    Raises:
        ValueError: If the image and class map sizes differ or `alpha` is out of
            range.
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) BGR image, got {image_bgr.shape}")
    if class_map.shape != image_bgr.shape[:2]:
        raise ValueError(
            f"class map {class_map.shape} does not match the image "
            f"{image_bgr.shape[:2]}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within 0..1, got {alpha}")
    out = image_bgr.copy()
    present = [int(c) for c in np.unique(class_map) if c >= 0]
    for class_id in present:
        where = class_map == class_id
        color = np.array(class_color(class_id), np.float32)
        blended = (1.0 - alpha) * out[where].astype(np.float32) + alpha * color
        out[where] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    if legend and present:
        _draw_legend(out, class_areas(class_map, names), present)
    return out


def _draw_legend(
    image: np.ndarray, areas: dict[str, float], class_ids: list[int]
) -> None:
    """Draws `■ name  12.3%` rows on a dark box in the top-left corner (in place)."""
    scale = max(0.35, min(image.shape[:2]) / 900)
    thickness = 1 if scale < 0.8 else 2
    font = cv2.FONT_HERSHEY_SIMPLEX
    rows = [f"{name}  {100 * share:.1f}%" for name, share in areas.items()]
    sizes = [cv2.getTextSize(row, font, scale, thickness)[0] for row in rows]
    line = max(h for _, h in sizes) + int(8 * scale) + 4
    swatch = line - 4
    width = min(image.shape[1], 12 + swatch + max(w for w, _ in sizes))
    height = min(image.shape[0], 6 + line * len(rows))
    box = image[:height, :width]
    box[:] = (0.35 * box.astype(np.float32)).astype(np.uint8)
    for i, (row, class_id) in enumerate(zip(rows, class_ids, strict=True)):
        top = 4 + i * line
        cv2.rectangle(
            image, (4, top), (4 + swatch, top + swatch), class_color(class_id), -1
        )
        cv2.putText(
            image,
            row,
            (8 + swatch, top + swatch - 2),
            font,
            scale,
            (255, 255, 255),
            thickness,
            cv2.LINE_AA,
        )
