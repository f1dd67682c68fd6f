"""Conversions between YOLO polygon labels, mask images and class maps."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

# A class map is an int32 (H, W) array holding a class id per pixel (0 .. nc-1, the
# YOLO ids), or one of these two values. They are negative so that no class id,
# however many classes, can collide with them.
BACKGROUND = -1
IGNORE = -2
# The pixel values of a stored mask PNG (segmentation layout): excluded, no object.
MASK_IGNORE = 255
MASK_BACKGROUND = 254

# cv2.fillPoly takes fixed-point vertices: 8 fractional bits, 1/256 px.
_SHIFT = 8


def parse_polygon_line(line: str) -> tuple[int, np.ndarray]:
    """Parses one YOLO segmentation label line, `class x1 y1 x2 y2 ...`.

    Args:
        line: The label line, coordinates normalised to the image (0..1).

    Returns:
        The class id and the (k, 2) float64 normalised points.

    Raises:
        ValueError: If the line is not a class followed by coordinate pairs.
    """
    parts = line.split()
    if len(parts) < 3 or len(parts) % 2 == 0:
        raise ValueError(
            f"expected `class x1 y1 x2 y2 ...` with coordinate pairs, got {line!r}"
        )
    try:
        class_id = float(parts[0])
        values = np.array([float(v) for v in parts[1:]], np.float64)
    except ValueError as error:
        raise ValueError(f"non-numeric value in label line {line!r}") from error
    if not class_id.is_integer() or class_id < 0:
        raise ValueError(f"class {parts[0]!r} is not a non-negative integer")
    return int(class_id), values.reshape(-1, 2)


def format_polygon_line(class_id: int, points: np.ndarray, digits: int = 6) -> str:
    """Formats normalised (k, 2) points as a YOLO segmentation label line."""
    coords = " ".join(f"{v:.{digits}f}" for v in np.asarray(points).reshape(-1))
    return f"{int(class_id)} {coords}"


def fill_polygons(
    class_map: np.ndarray, polygons: Iterable[np.ndarray], value: int
) -> np.ndarray:
    """Paints polygons given in pixel coordinates into a map, in place.

    Pixel coordinates are continuous: (0, 0) is the image's top-left corner and
    pixel (row r, column c) has its centre at (c + 0.5, r + 0.5), the convention of
    YOLO's normalised labels. A pixel is painted when its centre is inside a
    polygon or the outline passes through it (cv2.fillPoly, 1/256 px vertex
    precision; an edge exactly on a pixel border takes the pixel right of or
    below it). So an outline through the centres of a region's border pixels, as
    `mask_polygons` gives, paints exactly that region.

    Args:
        class_map: An (H, W) integer array.
        polygons: (k, 2) arrays of x, y points.
        value: The value to paint.

    Returns:
        `class_map`, painted.
    """
    scaled = [
        np.round((np.asarray(p, np.float64).reshape(-1, 2) - 0.5) * (1 << _SHIFT))
        .astype(np.int32)
        .reshape(-1, 1, 2)
        for p in polygons
    ]
    scaled = [p for p in scaled if len(p) >= 3]
    if not scaled:
        return class_map
    # cv2 draws into 8-bit or int32 images; paint a stencil, then copy the value.
    stencil = np.zeros(class_map.shape[:2], np.uint8)
    cv2.fillPoly(stencil, scaled, 1, lineType=cv2.LINE_8, shift=_SHIFT)
    class_map[stencil.astype(bool)] = value
    return class_map


def polygon_lines_to_class_map(
    lines: Iterable[str], shape: tuple[int, int]
) -> np.ndarray:
    """Rasterises YOLO polygon label lines into a class map.

    Later lines paint over earlier ones where polygons overlap (ground truth has
    no confidence to rank them). Blank lines are skipped.

    Args:
        lines: `class x1 y1 ...` lines, normalised.
        shape: The image's (height, width).

    Returns:
        An int32 (H, W) class map; pixels outside every polygon are `BACKGROUND`.

    Raises:
        ValueError: If a line cannot be parsed.
    """
    height, width = shape
    class_map = np.full((height, width), BACKGROUND, np.int32)
    scale = np.array([width, height], np.float64)
    for line in lines:
        if not line.strip():
            continue
        class_id, points = parse_polygon_line(line)
        fill_polygons(class_map, [points * scale], class_id)
    return class_map


def class_map_to_polygon_lines(
    class_map: np.ndarray, *, min_area: int = 0
) -> tuple[list[str], int]:
    """Turns a class map into YOLO polygon label lines, one per connected region.

    Args:
        class_map: An int32 (H, W) class map.
        min_area: Regions of fewer pixels are dropped.

    Returns:
        The normalised label lines and the number of regions dropped.
    """
    conversion = class_map_to_instances(class_map, min_area=min_area)
    return conversion.label_lines(class_map.shape[:2]), conversion.dropped


def mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Returns the outer outlines of a binary mask, largest area first.

    One (k, 2) float32 polygon per 8-connected region, through the centres of its
    border pixels, in continuous pixel coordinates (see `fill_polygons`, which
    paints the region back exactly, holes filled). This is Ultralytics'
    `masks2segments` (external contours, simple chains) plus half a pixel.

    Args:
        mask: An (H, W) boolean or 0/1 array.

    Returns:
        The polygons; a region of one or two pixels gives fewer than 3 points.
    """
    contours, _ = cv2.findContours(
        np.ascontiguousarray(mask, np.uint8),
        cv2.RETR_EXTERNAL,
        cv2.CHAIN_APPROX_SIMPLE,
    )
    ordered = sorted(contours, key=lambda c: (-cv2.contourArea(c), -len(c)))
    return [c.reshape(-1, 2).astype(np.float32) + 0.5 for c in ordered]


@dataclass
class MaskInstance:
    """One connected region of one class.

    Attributes:
        class_id: The YOLO class id.
        polygon: (k, 2) float32 outline in pixel coordinates (holes filled).
        area: The region's pixel count (holes excluded).
        holes: How many holes the region has (the polygon covers them).
    """

    class_id: int
    polygon: np.ndarray
    area: int
    holes: int = 0


@dataclass
class MaskConversion:
    """Instances found in a class map, and what was left out.

    Attributes:
        instances: One per kept connected region.
        dropped: Regions dropped: below `min_area`, or too thin to outline
            (fewer than 3 outline points or zero polygon area).
        holes: Holes inside kept regions, which their training polygons cover;
            the class map keeps them for evaluation.
    """

    instances: list[MaskInstance] = field(default_factory=list)
    dropped: int = 0
    holes: int = 0

    def label_lines(self, shape: tuple[int, int], digits: int = 6) -> list[str]:
        """Returns the instances as normalised YOLO segmentation label lines."""
        height, width = shape
        scale = np.array([width, height], np.float64)
        return [
            format_polygon_line(
                i.class_id, np.clip(i.polygon / scale, 0.0, 1.0), digits
            )
            for i in self.instances
        ]


def class_map_to_instances(
    class_map: np.ndarray, *, min_area: int = 0
) -> MaskConversion:
    """Splits a class map into one polygon per connected region of each class.

    Regions are 8-connected, the connectivity of cv2's outlines, so that each
    region has exactly one outer polygon. `BACKGROUND` and `IGNORE` pixels
    belong to no instance.

    Args:
        class_map: An int32 (H, W) class map.
        min_area: Regions of fewer pixels are dropped (and counted).

    Returns:
        The instances, class by class and then top to bottom, and the counts.
    """
    result = MaskConversion()
    for class_id in np.unique(class_map).tolist():
        if class_id < 0:
            continue
        binary = (class_map == class_id).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            binary, connectivity=8
        )
        for region in range(1, count):
            area = int(stats[region, cv2.CC_STAT_AREA])
            if area < min_area:
                result.dropped += 1
                continue
            region_mask = (labels == region).astype(np.uint8)
            polygon = mask_polygons(region_mask)[0]
            if polygon_problem(polygon) is not None:
                result.dropped += 1
                continue
            holes = _count_holes(region_mask)
            result.holes += holes
            result.instances.append(MaskInstance(class_id, polygon, area, holes))
    return result


def _count_holes(region_mask: np.ndarray) -> int:
    # In a two-level hierarchy, contours with a parent are the holes.
    _, hierarchy = cv2.findContours(
        region_mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )
    if hierarchy is None:
        return 0
    return int((hierarchy[0][:, 3] >= 0).sum())


def mask_to_class_map(
    mask: np.ndarray,
    num_classes: int,
    *,
    ignore: int | None = 255,
    background: int | None = None,
) -> np.ndarray:
    """Reads a mask image of class indices as a class map.

    Mask value `v` is class `v` (the index into the dataset's class list, and the
    YOLO id), so the class ids of a mask dataset are its pixel values.

    Args:
        mask: An (H, W) integer mask image (a single-channel PNG).
        num_classes: The length of the class list.
        ignore: The value of pixels excluded from training and evaluation.
        background: The value of pixels that are no object, if the dataset has
            one (it may be a class-list index, e.g. 0 "background": that class
            then never gets instances).

    Returns:
        An int32 (H, W) class map with `IGNORE` and `BACKGROUND` in place of
        `ignore` and `background`.

    Raises:
        ValueError: If the mask has more than one channel or values outside the
            class list (see `mask_problem`).
    """
    problem = mask_problem(mask, num_classes, ignore=ignore, background=background)
    if problem is not None:
        raise ValueError(problem)
    class_map = mask.astype(np.int32)
    if ignore is not None:
        class_map[mask == ignore] = IGNORE
    if background is not None:
        class_map[mask == background] = BACKGROUND
    return class_map


def class_map_to_mask(
    class_map: np.ndarray, *, ignore: int = 255, background: int = 255
) -> np.ndarray:
    """Writes a class map as a uint8 mask image of class indices.

    Args:
        class_map: An int32 (H, W) class map with fewer than 255 classes.
        ignore: The value for `IGNORE` pixels.
        background: The value for `BACKGROUND` pixels (a predicted map's
            unclaimed pixels); the same as `ignore` unless the class list has
            a background entry.

    Returns:
        A uint8 (H, W) array, ready for `cv2.imwrite(... .png)`.

    Raises:
        ValueError: If a class id does not fit in a byte.
    """
    if class_map.size and class_map.max() >= 255:
        raise ValueError(f"class id {class_map.max()} does not fit a uint8 mask")
    mask = class_map.astype(np.uint8)
    mask[class_map == IGNORE] = ignore
    mask[class_map == BACKGROUND] = background
    return mask


def mask_to_instances(
    mask: np.ndarray,
    num_classes: int,
    *,
    ignore: int | None = 255,
    background: int | None = None,
    min_area: int = 0,
) -> tuple[MaskConversion, np.ndarray]:
    """Converts a mask image into training polygons, keeping its class map.

    Args:
        mask: An (H, W) mask image of class indices.
        num_classes: The length of the class list.
        ignore: The value of excluded pixels.
        background: The value of pixels that are no object, if any.
        min_area: Regions of fewer pixels are dropped (and counted).

    Returns:
        The instances (use `label_lines` for YOLO labels) and the class map, for
        evaluation.

    Raises:
        ValueError: As `mask_to_class_map`.
    """
    class_map = mask_to_class_map(
        mask, num_classes, ignore=ignore, background=background
    )
    return class_map_to_instances(class_map, min_area=min_area), class_map


def mask_problem(
    mask: np.ndarray,
    num_classes: int,
    *,
    ignore: int | None = 255,
    background: int | None = None,
    image_shape: tuple[int, ...] | None = None,
) -> str | None:
    """Says what is wrong with a mask image, for validation and quarantine.

    Args:
        mask: The decoded mask image.
        num_classes: The length of the class list.
        ignore: The value of excluded pixels.
        background: The value of pixels that are no object, if any.
        image_shape: The shape of the image the mask belongs to, if known.

    Returns:
        A reason, or None when the mask is usable.
    """
    if mask.ndim != 2:
        return f"mask has shape {mask.shape}; expected one channel of class indices"
    if image_shape is not None and tuple(image_shape[:2]) != mask.shape:
        return (
            f"mask size {mask.shape[1]}x{mask.shape[0]} differs from its image "
            f"{image_shape[1]}x{image_shape[0]}"
        )
    values = np.unique(mask)
    allowed = (values >= 0) & (values < num_classes)
    for special in (ignore, background):
        if special is not None:
            allowed |= values == special
    if not allowed.all():
        bad = values[~allowed][:5].tolist()
        return f"mask values {bad} are outside the {num_classes} classes"
    return None


def polygon_problem(points: np.ndarray | Sequence[float]) -> str | None:
    """Says what is wrong with a polygon, for validation and quarantine.

    Repeated consecutive points are merged first. Edges that touch at a point, or
    run along each other (as outlines of one-pixel-wide parts of a mask do), are
    tolerated; two edges that cross are not.

    Args:
        points: (k, 2) points, or the flat `x1 y1 x2 y2 ...` values of a label
            line, in any consistent unit.

    Returns:
        "fewer than 3 points", "zero area" or "self-intersecting", or None.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts):
        keep = np.any(pts != np.roll(pts, 1, axis=0), axis=1)
        keep[0] = True
        pts = pts[keep]
        if len(pts) > 1 and np.array_equal(pts[0], pts[-1]):
            pts = pts[:-1]
    if len(pts) < 3:
        return "fewer than 3 points"
    x, y = pts[:, 0], pts[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    extent = max(np.ptp(x), np.ptp(y))
    # Crossing first: a symmetric bow tie's two lobes also cancel to zero area.
    if _edges_cross(pts):
        return "self-intersecting"
    if extent == 0 or area <= 1e-12 * extent**2:
        return "zero area"
    return None


def _edges_cross(pts: np.ndarray, chunk: int = 256) -> bool:
    """Whether two non-adjacent edges of a closed polygon properly cross."""
    n = len(pts)
    if n < 4:
        return False
    a, b = pts, np.roll(pts, -1, axis=0)

    def orient(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
        cross = (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (
            q[..., 1] - p[..., 1]
        ) * (r[..., 0] - p[..., 0])
        return np.sign(cross)

    index = np.arange(n)
    aj, bj = a[None, :, :], b[None, :, :]
    # Edges [start, stop) against every edge at once, in chunks to bound memory.
    for start in range(0, n, chunk):
        rows = index[start : start + chunk]
        ai, bi = a[rows, None, :], b[rows, None, :]
        d1, d2 = orient(ai, bi, aj), orient(ai, bi, bj)
        d3, d4 = orient(aj, bj, ai), orient(aj, bj, bi)
        crossing = (d1 * d2 < 0) & (d3 * d4 < 0)
        gap = np.abs(rows[:, None] - index[None, :])
        if (crossing & (gap > 1) & (gap < n - 1)).any():
            return True
    return False
