"""HTML views of a dataset version for the ZenML dashboard."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from visionops.data.manifest import MANIFEST_FILE, Manifest
from visionops.data.split import SPLITS
from visionops.data.version import DatasetVersion

if TYPE_CHECKING:
    from visionops.engine.task import Task

PALETTE = [
    (56, 56, 255),
    (151, 157, 255),
    (31, 112, 255),
    (29, 178, 255),
    (49, 210, 207),
    (10, 249, 72),
    (23, 204, 146),
    (134, 219, 61),
    (52, 147, 26),
    (187, 212, 0),
]
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _luminance(color_bgr: tuple[int, int, int]) -> float:
    """WCAG relative luminance of an 8-bit sRGB colour given as BGR."""
    channels = [c / 255 for c in color_bgr[::-1]]
    r, g, b = (
        c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels
    )
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a_bgr: tuple[int, int, int], b_bgr: tuple[int, int, int]) -> float:
    """WCAG contrast ratio of two BGR colours, from 1 (same) to 21 (black/white)."""
    light, dark = sorted((_luminance(a_bgr), _luminance(b_bgr)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def text_color(background_bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever has the higher contrast ratio on the background.

    Every colour has at least 4.58:1 with one of them (WCAG AA asks 4.5:1).
    """
    black, white = (0, 0, 0), (255, 255, 255)
    on_black = contrast_ratio(background_bgr, black)
    return black if on_black >= contrast_ratio(background_bgr, white) else white


def draw_box(
    image: np.ndarray, xyxy: tuple[int, int, int, int], cls: int, label: str
) -> None:
    """Draws one labelled box, in pixels, on a BGR image (in place).

    Line width and text size scale with the image (Ultralytics' annotator
    rule); the label sits on a box filled with the class colour, above the box
    (inside it when there is no room above), with black or white text,
    whichever contrasts more, so it reads on any image.
    """
    height, width = image.shape[:2]
    line = max(round((height + width) / 2 * 0.003), 2)
    scale, weight = line / 3, max(line - 1, 1)
    x1, y1, x2, y2 = xyxy
    color = PALETTE[cls % len(PALETTE)]
    cv2.rectangle(image, (x1, y1), (x2, y2), color, line, cv2.LINE_AA)
    if not label:
        return
    (text_w, text_h), baseline = cv2.getTextSize(label, FONT, scale, weight)
    label_h = text_h + baseline + 2 * weight
    outside = y1 - label_h >= 0  # room above the box
    top = y1 - label_h if outside else max(y1, 0)
    left = min(max(x1, 0), max(width - text_w - 2 * weight, 0))
    cv2.rectangle(
        image, (left, top), (left + text_w + 2 * weight, top + label_h), color, -1
    )
    cv2.putText(
        image,
        label,
        (left + weight, top + weight + text_h),
        FONT,
        scale,
        text_color(color),
        weight,
        cv2.LINE_AA,
    )


def draw_polygon(image: np.ndarray, points: np.ndarray, cls: int, label: str) -> None:
    """Draws one labelled, translucent polygon, in pixels, on a BGR image."""
    thickness = max(1, round(max(image.shape[:2]) / 300))
    color = PALETTE[cls % len(PALETTE)]
    outline = np.round(points).astype(np.int32).reshape(-1, 1, 2)
    fill = image.copy()
    cv2.fillPoly(fill, [outline], color)
    cv2.addWeighted(fill, 0.35, image, 0.65, 0, dst=image)
    cv2.polylines(image, [outline], True, color, thickness)
    x, y = outline[:, 0, 0].min(), outline[:, 0, 1].min()
    cv2.putText(
        image,
        label,
        (int(x), int(max(12, y - 4))),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.4 * thickness,
        color,
        thickness,
    )


def draw_boxes(image: np.ndarray, label_text: str, names: list[str]) -> np.ndarray:
    """Draws YOLO-normalised boxes and polygons with class names (in place).

    A line of more than 5 values is a polygon (`cls x1 y1 x2 y2 ...`).
    """
    h, w = image.shape[:2]
    for line in label_text.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        cls = int(float(parts[0]))
        name = names[cls] if 0 <= cls < len(names) else str(cls)
        if len(parts) > 5:
            points = np.array([float(v) for v in parts[1:]]).reshape(-1, 2)
            draw_polygon(image, points * (w, h), cls, name)
            continue
        cx, cy, bw, bh = (float(v) for v in parts[1:5])
        xyxy = (
            int((cx - bw / 2) * w),
            int((cy - bh / 2) * h),
            int((cx + bw / 2) * w),
            int((cy + bh / 2) * h),
        )
        draw_box(image, xyxy, cls, name)
    return image


def _thumbnail(
    image_path: Path,
    label_path: Path | None,
    names: list[str],
    size: int = 200,
    class_name: str | None = None,
) -> str:
    image = cv2.imread(str(image_path))
    if image is None:
        return ""
    label = label_path.read_text() if label_path and label_path.is_file() else ""
    draw_boxes(image, label, names)
    scale = size / max(image.shape[:2])
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if class_name is not None:
        cls = names.index(class_name) if class_name in names else 0
        cv2.rectangle(image, (0, 0), (image.shape[1], 22), (0, 0, 0), -1)
        cv2.putText(
            image,
            class_name,
            (4, 16),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.55,
            PALETTE[cls % len(PALETTE)],
            1,
        )
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return base64.b64encode(buf.tobytes()).decode() if ok else ""


def _histogram(card: dict[str, Any], key: str) -> str:
    names = card["class_names"]
    counts = {s: card["splits"][s].get(key, {}) for s in SPLITS}
    peak = max([1] + [counts[s].get(n, 0) for s in SPLITS for n in names])
    rows = []
    for name in names:
        bars = "".join(
            f'<div class="bar {s}" style="width:{300 * counts[s].get(name, 0) / peak:.0f}px">'
            f"{counts[s].get(name, 0)}</div>"
            for s in SPLITS
        )
        rows.append(f"<tr><th>{html.escape(name)}</th><td>{bars}</td></tr>")
    return "<table class='hist'>" + "".join(rows) + "</table>"


def _original_names(root: Path) -> dict[str, str]:
    """Maps each item id (the stem of its file) to its file name in the source."""
    if not (root / MANIFEST_FILE).is_file():
        return {}
    return {item.id: Path(item.source).name for item in Manifest.read(root).items}


def dataset_html(
    version: DatasetVersion, task: Task, samples_per_split: int = 6
) -> str:
    """Renders the card of a dataset version as one self-contained HTML page.

    Args:
        version: The dataset version.
        task: Its task: the layout the samples are read with and the per-class
            count the histogram shows (`Task.counts_key`).
        samples_per_split: Thumbnails per split.
    """
    card = version.card
    names = card["class_names"]
    layout = task.layout
    key = task.counts_key
    noun = key.removesuffix("_per_class")
    achieved = card.get("split", {}).get("achieved", {})
    split_rows = "".join(
        f"<tr><td>{s}</td><td>{card['splits'][s]['images']}</td><td>{card['splits'][s]['groups']}</td>"
        f"<td>{sum(card['splits'][s].get(key, {}).values())}</td>"
        f"<td>{100 * achieved.get(s, 0):.1f}%</td></tr>"
        for s in SPLITS
    )
    original = _original_names(version.root)
    grids = []
    for split in SPLITS:
        images = task.split_images(version, split)
        # Spread the sample over the classes (split_images sorts by class).
        step = max(1, len(images) // samples_per_split)
        images = images[::step][:samples_per_split]
        cells = "".join(
            f'<figure><img src="data:image/jpeg;base64,{b64}"><figcaption>'
            f"{html.escape(original.get(p.stem, p.name)[-48:])}</figcaption></figure>"
            for p in images
            if (
                b64 := _thumbnail(
                    p,
                    layout.label_file(version.root, p),
                    names,
                    class_name=layout.image_class(version.root, p),
                )
            )
        )
        if cells:
            grids.append(f"<h3>{split}</h3><div class='grid'>{cells}</div>")
    quarantine_rows = (
        "".join(
            f"<tr><td>{html.escape(q['reason'])}</td><td>{html.escape(q['source'])}</td><td>{html.escape(q['detail'])}</td></tr>"
            for q in card["quarantine"]
        )
        or "<tr><td colspan=3>nothing quarantined</td></tr>"
    )
    fixes = ", ".join(f"{k}: {v}" for k, v in card["fix_counts"].items()) or "none"
    faces = card["faces"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body{{font-family:sans-serif;margin:16px}} table{{border-collapse:collapse;margin-bottom:12px}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}} .hist td{{border:none}}
.bar{{height:16px;margin:2px 0;color:#fff;font-size:11px;padding-left:3px;min-width:14px}}
.train{{background:#3b6fd6}} .val{{background:#e08a1e}} .test{{background:#3a9d4a}}
.grid{{display:flex;flex-wrap:wrap;gap:8px}} figure{{margin:0;font-size:10px;width:200px}}
</style></head><body>
<h2>Dataset {card["hash"][:12]}</h2>
<p>Source: <code>{html.escape(card["source"])}</code> ({card["source_format"]}).
{card["items_in"]} items in = {card["accepted"]} accepted + {card["quarantined"]} quarantined.
Fixes: {html.escape(fixes)}. Faces blurred: {faces["faces"]} in {faces["images_with_faces"]} images.</p>
<table><tr><th>split</th><th>images</th><th>groups</th><th>{noun}</th><th>share</th></tr>{split_rows}</table>
<h3>{noun.capitalize()} per class (<span class="bar train" style="display:inline">train</span>
<span class="bar val" style="display:inline">val</span> <span class="bar test" style="display:inline">test</span>)</h3>
{_histogram(card, key)}
{"".join(grids)}
<h3>Quarantine</h3><table><tr><th>reason</th><th>source</th><th>detail</th></tr>{quarantine_rows}</table>
</body></html>"""
