"""Face anonymisation quality: face recall and blur outside faces, per threshold.

Usage: python bench/anonymize_quality.py [--thresholds 0.2,...] [--sizes 160,320,640]

Runs the project's own code path (`visionops.data.anonymize`: `detect_faces`, then
`hide_faces` with the default mask settings) on `../shared/datasets/faces-masks`,
a COCO export in which every box is a face (132 images, 584 faces). For each
`detect_size`, faces are detected once per image at the lowest threshold; every
higher threshold keeps the detections scoring above it, which is exactly what
CenterFace returns at that threshold (its greedy NMS only suppresses boxes under
a higher-scoring one). Measured per (detect_size, threshold):

- face recall: a face counts as hidden when more than half of its box's pixels
  changed; also for faces at least `--large` px on their short side;
- blurred area outside faces: the share of pixels outside every face box that
  changed (the `mask_scale` margin around a hidden face counts here too), and
  outside the face boxes grown by that margin (what false detections blur);
- false detections: hidden boxes that overlap no face box by 10% of their area;
- on roboflow-boards (no people at all), the images that would be altered;
- time per image: detection (one ONNX Runtime thread, as a pipeline worker) at
  each size, interleaved image by image, plus masking.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

FACES = ROOT.parent / "shared" / "datasets" / "faces-masks" / "valid"
BOARDS = ROOT.parent / "shared" / "datasets" / "roboflow-boards"


def _faces(folder: Path) -> list[tuple[Path, list[tuple[int, int, int, int]]]]:
    """Images and their face boxes (x1, y1, x2, y2) from the COCO annotations."""
    coco = json.loads((folder / "_annotations.coco.json").read_text())
    boxes: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        boxes[ann["image_id"]].append((round(x), round(y), round(x + w), round(y + h)))
    return [(folder / im["file_name"], boxes[im["id"]]) for im in coco["images"]]


def main() -> None:
    """Prints one table row per (detect_size, threshold)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", default="0.2,0.3,0.4,0.5,0.6,0.7")
    parser.add_argument("--sizes", default="160,320,640")
    parser.add_argument("--large", type=int, default=24, help="short side, px")
    args = parser.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]

    import cv2
    import numpy as np

    from visionops.data.anonymize import (
        AnonymizeSettings,
        configure_detector,
        detect_faces,
        hide_faces,
    )

    configure_detector(threads=1)
    default = AnonymizeSettings()
    low = min(thresholds)
    grow = default.mask_scale - 1.0
    images = _faces(FACES)
    n_faces = sum(len(b) for _, b in images)
    biggest = max(max(cv2.imread(str(p)).shape[:2]) for p, _ in images)

    # Detection once per image and size, sizes interleaved image by image.
    dets: dict[int, list[np.ndarray]] = {s: [] for s in sizes}
    detect_s: dict[int, list[float]] = {s: [] for s in sizes}
    frames = [cv2.imread(str(p)) for p, _ in images]
    for frame in frames:
        for size in sizes:
            settings = default.model_copy(
                update={"threshold": low, "detect_size": size}
            )
            start = time.perf_counter()
            dets[size].append(detect_faces(frame, settings))
            detect_s[size].append(time.perf_counter() - start)

    board_paths = sorted(BOARDS.rglob("*.jpg"))
    board_dets = []
    if board_paths:
        settings = default.model_copy(update={"threshold": low})
        board_dets = [detect_faces(cv2.imread(str(p)), settings) for p in board_paths]

    rows = []
    for size in sizes:
        for threshold in thresholds:
            hidden = hidden_large = large = false_dets = 0
            outside_changed = outside_total = beyond_changed = beyond_total = 0
            images_complete = 0
            hide_s = []
            pairs = zip(frames, images, dets[size], strict=True)
            for frame, (_, faces), found in pairs:
                kept = found[found[:, 4] > threshold]
                start = time.perf_counter()
                out, _ = hide_faces(frame, kept, default)
                hide_s.append(time.perf_counter() - start)
                changed = (out != frame).any(axis=2)
                inside = np.zeros(changed.shape, bool)
                grown = np.zeros(changed.shape, bool)
                all_hidden = True
                for x1, y1, x2, y2 in faces:
                    box = changed[y1:y2, x1:x2]
                    inside[y1:y2, x1:x2] = True
                    gx, gy = (x2 - x1) * grow, (y2 - y1) * grow
                    grown[
                        max(0, round(y1 - gy)) : round(y2 + gy),
                        max(0, round(x1 - gx)) : round(x2 + gx),
                    ] = True
                    ok = box.size > 0 and box.mean() > 0.5
                    hidden += ok
                    all_hidden &= ok
                    if min(x2 - x1, y2 - y1) >= args.large:
                        large += 1
                        hidden_large += ok
                images_complete += all_hidden
                outside_changed += int(changed[~inside].sum())
                outside_total += int((~inside).sum())
                beyond_changed += int(changed[~grown].sum())
                beyond_total += int((~grown).sum())
                for x1, y1, x2, y2, _ in kept:
                    area = max(1e-6, (x2 - x1) * (y2 - y1))
                    overlap = max(
                        (
                            max(0.0, min(x2, fx2) - max(x1, fx1))
                            * max(0.0, min(y2, fy2) - max(y1, fy1))
                            for fx1, fy1, fx2, fy2 in faces
                        ),
                        default=0.0,
                    )
                    false_dets += overlap / area < 0.1
            boards = sum(bool((d[:, 4] > threshold).any()) for d in board_dets)
            ms = 1000 * (statistics.median(detect_s[size]) + statistics.median(hide_s))
            rows.append(
                (
                    size,
                    threshold,
                    hidden / n_faces,
                    hidden_large / max(1, large),
                    images_complete,
                    outside_changed / outside_total,
                    beyond_changed / beyond_total,
                    false_dets,
                    boards,
                    ms,
                )
            )

    print(
        f"\nfaces-masks valid: {len(images)} images (longest side <= {biggest} px), "
        f"{n_faces} faces ({large} with a short side >= {args.large} px); "
        f"mask_scale {default.mask_scale}, {default.replace_with}, "
        f"ellipse={default.ellipse}; 1 ONNX Runtime thread"
    )
    print(
        "\n| detect_size | threshold | face recall | recall, faces >= "
        f"{args.large} px | images with every face hidden | blurred outside faces "
        "| blurred outside faces + mask_scale margin | false detections | "
        f"roboflow-boards images altered (of {len(board_paths)}, 640 px) | ms/image |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, t, recall, big, complete, outside, beyond, false, boards, ms in rows:
        board_cell = str(boards) if size == default.detect_size else ""
        print(
            f"| {size} | {t:.1f} | {recall:.1%} | {big:.1%} | "
            f"{complete}/{len(images)} | {outside:.2%} | {beyond:.2%} | {false} | "
            f"{board_cell} | "
            f"{ms:.1f} |"
        )


if __name__ == "__main__":
    main()
