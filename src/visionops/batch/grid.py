"""Grids of annotated thumbnails: batch's sample grid, a video's contact sheet."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

_CELL = 240  # side of one thumbnail, pixels
_CAPTION = 18  # caption strip under each thumbnail, pixels


def grid_indices(count: int, size: int) -> set[int]:
    """`size` image indices spread evenly over `count` images."""
    if count == 0 or size == 0:
        return set()
    return {round(i) for i in np.linspace(0, count - 1, min(size, count))}


def fit(image: np.ndarray) -> np.ndarray:
    """The image shrunk (or grown) to fit one grid cell."""
    h, w = image.shape[:2]
    scale = _CELL / max(h, w)
    return cv2.resize(
        image,
        (max(1, round(w * scale)), max(1, round(h * scale))),
        interpolation=cv2.INTER_AREA,
    )


def cell(small: np.ndarray, caption: str) -> np.ndarray:
    """One grid cell: the drawn thumbnail centred, its file name below."""
    cell = np.full((_CELL + _CAPTION, _CELL, 3), 255, np.uint8)
    top, left = (_CELL - small.shape[0]) // 2, (_CELL - small.shape[1]) // 2
    cell[top : top + small.shape[0], left : left + small.shape[1]] = small
    text = caption if len(caption) <= 34 else caption[:15] + "..." + caption[-16:]
    cv2.putText(
        cell,
        text,
        (3, _CELL + 13),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.38,
        (40, 40, 40),
        1,
        cv2.LINE_AA,
    )
    return cell


def write_grid(cells: list[np.ndarray], path: Path) -> None:
    """The cells as a near-square JPEG grid at `path`."""
    columns = math.ceil(math.sqrt(len(cells)))
    rows = math.ceil(len(cells) / columns)
    height, width = cells[0].shape[:2]
    canvas = np.full((rows * height, columns * width, 3), 255, np.uint8)
    for index, cell in enumerate(cells):
        r, c = divmod(index, columns)
        canvas[r * height : (r + 1) * height, c * width : (c + 1) * width] = cell
    if not cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 85]):
        raise OSError(f"could not write {path}")
