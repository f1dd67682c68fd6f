"""Segmentation labels: YOLO polygon lines, or mask images turned into them."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from visionops.data.manifest import Item
from visionops.data.masks import (
    MASK_BACKGROUND,
    MASK_IGNORE,
    class_map_to_mask,
    format_polygon_line,
    mask_problem,
    mask_to_instances,
    polygon_problem,
)
from visionops.data.validate import CheckedLabels, LabelCheck, Reject, read_label


def check_labels(item: Item, check: LabelCheck) -> CheckedLabels:
    """Checks an item's mask image, or else its polygon label lines.

    Raises:
        Reject: With the first label, polygon or mask reason that applies.
    """
    if item.mask is not None:
        return _check_mask(item, check)
    raw, bom, lines = read_label(item, check)
    if not lines:
        assert item.label is not None  # read_label rejects an item without one
        return CheckedLabels(item, {item.label: raw}, bom)
    return _check_polygons(item, raw, bom, lines, check)


_ORIENTATION_TURNS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _check_polygons(
    item: Item,
    raw: bytes,
    bom: list[tuple[str, str]],
    lines: list[tuple[int, list[str]]],
    check: LabelCheck,
) -> CheckedLabels:
    """Checks the polygon lines of a segmentation label; polygons stay polygons.

    Raises:
        Reject: With the first label or polygon reason that applies.
    """
    rows: list[tuple[int, list[float]]] = []
    for number, fields in lines:
        count = len(fields)
        if count < 3 or count % 2 == 0:
            raise Reject(
                "label_malformed",
                f"line {number}: {count} fields; expected a class and x y points",
            )
        try:
            values = [float(value) for value in fields]
        except ValueError:
            raise Reject(
                "label_malformed", f"line {number}: non-numeric value in {fields}"
            ) from None
        if count < 7:
            what = "a `cls cx cy w h` box" if count == 5 else "1 point"
            raise Reject(
                "polygon_too_few_points",
                f"line {number}: {what}; a polygon needs at least 3 points",
            )
        rows.append((number, values))
    original = dict(lines)
    for number, values in rows:
        if not all(math.isfinite(v) for v in values):
            raise Reject("label_nan", f"line {number}: {' '.join(original[number])}")
    for number, values in rows:
        check.reject_out_of_range(number, values[1:], "polygon point")
    check.reject_unknown_classes(rows)

    out_lines: list[str] = []
    seen: set[tuple[int, ...]] = set()
    clipped = duplicates = 0
    for number, values in rows:
        points = np.clip(np.asarray(values[1:], np.float64).reshape(-1, 2), 0.0, 1.0)
        problem = polygon_problem(points)
        if problem is not None:
            reason = (
                "polygon_too_few_points"
                if "points" in problem
                else "polygon_self_intersecting"
                if "intersect" in problem
                else "polygon_zero_area"
            )
            raise Reject(reason, f"line {number}: {problem}")
        width, height = np.ptp(points, axis=0)
        if min(width, height) <= check.settings.min_box_size:
            raise Reject(
                "zero_area_box",
                f"line {number}: {width:.4g} x {height:.4g} after clipping",
            )
        key = (int(values[0]), *(round(v * 1e6) for v in points.reshape(-1)))
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        if np.array_equal(points.reshape(-1), values[1:]):
            out_lines.append(" ".join(original[number]))
        else:
            clipped += 1
            out_lines.append(format_polygon_line(int(values[0]), points))
    fixes = bom + [
        (name, f"{count} line(s)")
        for name, count in (
            ("polygon_clipped", clipped),
            ("duplicate_label_line", duplicates),
        )
        if count
    ]
    if len(fixes) > len(bom):
        raw = ("\n".join(out_lines) + "\n").encode()
    assert item.label is not None
    return CheckedLabels(item, {item.label: raw}, fixes)


def _read_mask(path: Path) -> np.ndarray:
    """Decodes a mask PNG to its class indices (palette indices, not colours).

    Raises:
        Reject: `mask_unreadable` when it does not decode or has colours.
    """
    try:
        with Image.open(path) as opened:
            opened.load()
            mode = opened.mode
            mask = np.asarray(opened)
    except Exception as error:  # PIL raises many types on hostile files
        raise Reject("mask_unreadable", f"{type(error).__name__}: {error}") from None
    if mask.ndim == 3:
        channels = mask[..., : min(3, mask.shape[2])]
        if not (channels == channels[..., :1]).all():
            raise Reject(
                "mask_unreadable",
                f"{mode} mask with colours; expected one channel of class indices",
            )
        mask = channels[..., 0]
    if mask.dtype == bool:
        mask = mask.astype(np.uint8)
    return mask


def _check_mask(item: Item, check: LabelCheck) -> CheckedLabels:
    """Checks a mask image and turns it into polygon lines.

    A mask drawn on the stored pixels of an image that validation turned
    upright (EXIF orientation) is turned the same way.

    Returns:
        The item with its new label: the polygon lines, and the mask re-encoded
        as a single-channel PNG (class ids, `MASK_IGNORE`, `MASK_BACKGROUND`).

    Raises:
        Reject: With the first mask reason that applies (or `label_empty`).
    """
    assert item.mask is not None
    mask = _read_mask(check.src / item.mask)
    upright = check.upright
    shape = (upright.height, upright.width)
    if mask.shape != shape and upright.orientation != 1 and mask.shape == shape[::-1]:
        turn = _ORIENTATION_TURNS[upright.orientation]
        mask = np.asarray(Image.fromarray(mask).transpose(turn))
    if mask.shape != shape:
        raise Reject(
            "mask_size_mismatch",
            f"mask {mask.shape[1]}x{mask.shape[0]} px, image "
            f"{upright.width}x{upright.height} px",
        )
    ignore, background = check.mask_ignore, check.mask_background
    problem = mask_problem(
        mask, check.num_classes, ignore=ignore, background=background
    )
    if problem is not None:
        raise Reject("mask_unknown_value", problem)
    conversion, class_map = mask_to_instances(
        mask, check.num_classes, ignore=ignore, background=background
    )
    lines = conversion.label_lines(shape)
    if not lines and not check.settings.keep_background:
        raise Reject("label_empty", "the mask holds no class region")
    ok, encoded = cv2.imencode(
        ".png",
        class_map_to_mask(class_map, ignore=MASK_IGNORE, background=MASK_BACKGROUND),
    )
    if not ok:
        raise Reject("mask_unreadable", "the mask could not be re-encoded")
    detail = f"{len(lines)} polygon(s)"
    if conversion.dropped:
        detail += f", {conversion.dropped} region(s) too small to outline dropped"
    if conversion.holes:
        detail += f", {conversion.holes} hole(s) covered (kept in the mask)"
    label = "".join(f"{line}\n" for line in lines).encode()
    label_rel = f"labels/{item.id}.txt"
    return CheckedLabels(
        item.model_copy(update={"label": label_rel}),
        {label_rel: label, item.mask: encoded.tobytes()},
        [("mask_to_polygons", detail)],
    )
