"""Segmentation dataset layout: YOLO-seg images, polygon labels, data.yaml, GT masks.

`images/<split>/<id>.<ext>`, `labels/<split>/<id>.txt` (`class x1 y1 x2 y2 ...`
polygon lines, normalised) and `data.yaml`, as Ultralytics' segment task reads
them; plus, for datasets ingested from mask images, the ground-truth masks kept
for evaluation: `masks/<split>/<id>.png`, single-channel, pixel = class id,
`MASK_IGNORE` = excluded, `MASK_BACKGROUND` = no object. `class_map` gives the
ground truth of any image as a class map, from its mask or its polygons.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from visionops.core.files import link_or_copy
from visionops.data.manifest import Item
from visionops.data.masks import (
    BACKGROUND,
    IGNORE,
    MASK_BACKGROUND,
    MASK_IGNORE,
    polygon_lines_to_class_map,
)
from visionops.tasks.detect import layout as detect

DATA_YAML = detect.DATA_YAML
MASKS_DIR = "masks"
# Values of a versioned mask that are no class (class ids stay below both).
# What the content hash covers, relative to the version root.
HASHED = ("images", "labels", MASKS_DIR, DATA_YAML)
# The card counts label lines per class as instances.
COUNTS_KEY = "instances_per_class"

write_config = detect.write_config
ultralytics_data = detect.ultralytics_data
split_dir = detect.split_dir
split_images = detect.split_images
label_file = detect.label_file
image_class = detect.image_class


def place_item(
    staged: Path, item: Item, split: str, dest: Path, class_names: list[str]
) -> Path:
    """Places an item's image, polygon label and mask (if any); returns the image.

    An accepted item without a label (a kept background image) gets an empty
    label, which Ultralytics reads as "no object".
    """
    placed = detect.place_item(staged, item, split, dest, class_names)
    if item.mask:
        link_or_copy(
            staged / item.mask, dest / MASKS_DIR / split / f"{placed.stem}.png"
        )
    return placed


def mask_file(root: Path, image: Path) -> Path | None:
    """The ground-truth mask of a placed image, or None when it has none."""
    path = root / MASKS_DIR / image.parent.name / f"{image.stem}.png"
    return path if path.is_file() else None


def class_map(root: Path, image: Path) -> np.ndarray:
    """The ground-truth class map of a placed image, for semantic evaluation.

    From the image's mask when the source had masks (holes and ignored pixels
    as annotated), else rasterised from its polygon label.

    Returns:
        An int32 (H, W) array of class ids, `masks.BACKGROUND` where there is
        no object and `masks.IGNORE` where pixels are left out.

    Raises:
        ValueError: When the mask cannot be read.
    """
    mask_path = mask_file(root, image)
    if mask_path is not None:
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        if mask is None or mask.ndim != 2:
            raise ValueError(f"{mask_path} is not a single-channel mask image")
        result = mask.astype(np.int32)
        result[mask == MASK_IGNORE] = IGNORE
        result[mask == MASK_BACKGROUND] = BACKGROUND
        return result
    with Image.open(image) as opened:  # Reads the header only.
        width, height = opened.size
    label = label_file(root, image)
    lines = label.read_text().splitlines() if label and label.is_file() else []
    return polygon_lines_to_class_map(lines, (height, width))
