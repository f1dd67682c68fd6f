"""Detection labels: YOLO box lines, polygons turned into their boxes."""

from __future__ import annotations

import math

from visionops.data.manifest import Item
from visionops.data.validate import CheckedLabels, LabelCheck, Reject, read_label


def check_labels(item: Item, check: LabelCheck) -> CheckedLabels:
    """Checks the box lines of a detection label; fixes what is safe to fix.

    Boxes slightly outside the image are clipped, polygon lines become their
    bounding box and repeated lines are dropped.

    Raises:
        Reject: With the first label reason that applies.
    """
    raw, bom, lines = read_label(item, check)
    assert item.label is not None  # read_label rejects an item without one
    if not lines:
        return CheckedLabels(item, {item.label: raw}, bom)
    original = dict(lines)
    rows = [_parse_line(number, fields) for number, fields in lines]
    for number, values in rows:
        if not all(math.isfinite(v) for v in values):
            raise Reject("label_nan", f"line {number}: {' '.join(original[number])}")
    settings = check.settings
    boxes = [(number, values[0], *_corners(values)) for number, values in rows]
    for number, _, xs, ys in boxes:
        check.reject_out_of_range(number, (*xs, *ys), "corner")
    check.reject_unknown_classes(rows)

    out_lines: list[str] = []
    seen: set[tuple[int, ...]] = set()
    clipped = polygons = duplicates = 0
    for number, cls, (x1, x2), (y1, y2) in boxes:
        cx1, cx2, cy1, cy2 = (min(max(v, 0.0), 1.0) for v in (x1, x2, y1, y2))
        width, height = cx2 - cx1, cy2 - cy1
        if width <= settings.min_box_size or height <= settings.min_box_size:
            raise Reject(
                "zero_area_box",
                f"line {number}: {width:.4g} x {height:.4g} after clipping",
            )
        is_polygon = len(original[number]) > 5
        was_clipped = (cx1, cx2, cy1, cy2) != (x1, x2, y1, y2)
        polygons += is_polygon
        clipped += was_clipped
        box = (int(cls), (cx1 + cx2) / 2, (cy1 + cy2) / 2, width, height)
        key = (int(cls), *(round(v * 1e6) for v in box[1:]))
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        if is_polygon or was_clipped:
            out_lines.append("{} {:.6f} {:.6f} {:.6f} {:.6f}".format(*box))
        else:
            out_lines.append(" ".join(original[number]))

    fixes = bom + [
        (name, f"{count} line(s)")
        for name, count in (
            ("polygon_to_box", polygons),
            ("box_clipped", clipped),
            ("duplicate_label_line", duplicates),
        )
        if count
    ]
    if len(fixes) > len(bom):
        raw = ("\n".join(out_lines) + "\n").encode()
    return CheckedLabels(item, {item.label: raw}, fixes)


def _parse_line(number: int, fields: list[str]) -> tuple[int, list[float]]:
    """Parses a box (5 fields) or polygon (class + at least 3 points) line."""
    count = len(fields)
    if count != 5 and not (count >= 7 and count % 2 == 1):
        raise Reject(
            "label_malformed",
            f"line {number}: {count} fields; expected 5 (cls cx cy w h) or "
            "a class and at least 3 x y points",
        )
    try:
        return number, [float(value) for value in fields]
    except ValueError:
        raise Reject(
            "label_malformed", f"line {number}: non-numeric value in {fields}"
        ) from None


def _corners(values: list[float]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Returns ((x1, x2), (y1, y2)) of a box or of a polygon's bounding box."""
    if len(values) == 5:
        _, cx, cy, w, h = values
        return (cx - w / 2, cx + w / 2), (cy - h / 2, cy + h / 2)
    xs, ys = values[1::2], values[2::2]
    return (min(xs), max(xs)), (min(ys), max(ys))
