"""ONNX Runtime instance segmentation that reproduces Ultralytics' predict."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from visionops.data.masks import mask_polygons
from visionops.engine.onnx import GraphRows, OverBudgetError, _name, scale_boxes
from visionops.tasks.detect.onnx import Detections, OnnxDetector
from visionops.tasks.segment.metrics import rasterise_instances

# Full-frame pixels of mask work one image may take: each instance's logits are
# upsampled to the whole image (4 bytes a pixel, one at a time) before they are
# cut to its box, and its box's window is kept (1 byte a pixel). 400 Mpx is 10
# instances on a 40 Mpx image, 200 on a 2 Mpx one: beyond it, conf=0 and a high
# max_det on a large image would take gigabytes and minutes.
MAX_MASK_PIXELS = 400_000_000


@dataclass(eq=False)
class Instances(Detections):
    """Segmented instances of one image, in the original image's pixels.

    A mask is False outside its box, so only the box's window of it is kept:
    1000 instances on a 40 Mpx image would take 40 GB as full-frame masks.
    `masks` pastes them into full frames for a caller that needs those.

    Attributes:
        boxes: (n, 4) float32 boxes as x1, y1, x2, y2.
        scores: (n,) float32 confidences, highest first.
        class_ids: (n,) int64 class indices.
        crops: Per instance, its boolean mask inside its window.
        windows: (n, 4) int64 windows of the crops in the image, as x0, y0, x1,
            y1 (x1 and y1 exclusive).
        shape: The image's (height, width).
        polygons: Per instance, the outlines of its mask's connected parts,
            largest first, as (k, 2) float32 x, y arrays in continuous pixel
            coordinates (pixel centres at +0.5; see `masks.fill_polygons`).
    """

    crops: list[np.ndarray]
    windows: np.ndarray
    shape: tuple[int, int]
    polygons: list[list[np.ndarray]]

    @classmethod
    def empty(cls, shape: tuple[int, int] = (0, 0)) -> Instances:
        """Returns no instance for an image of `shape` (height, width)."""
        none = Detections.empty()
        return cls(
            none.boxes,
            none.scores,
            none.class_ids,
            [],
            np.zeros((0, 4), np.int64),
            shape,
            [],
        )

    @classmethod
    def from_masks(
        cls,
        boxes: np.ndarray,
        scores: np.ndarray,
        class_ids: np.ndarray,
        masks: np.ndarray,
        polygons: list[list[np.ndarray]],
    ) -> Instances:
        """Instances from (n, H, W) full-frame masks, kept as their windows."""
        crops, windows = [], []
        for mask in masks:
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            if not len(rows):
                windows.append((0, 0, 0, 0))
                crops.append(np.zeros((0, 0), bool))
                continue
            x0, y0, x1, y1 = cols[0], rows[0], cols[-1] + 1, rows[-1] + 1
            windows.append((x0, y0, x1, y1))
            crops.append(np.array(mask[y0:y1, x0:x1], bool))
        return cls(
            boxes,
            scores,
            class_ids,
            crops,
            np.array(windows, np.int64).reshape(-1, 4),
            (int(masks.shape[1]), int(masks.shape[2])),
            polygons,
        )

    @property
    def masks(self) -> np.ndarray:
        """(n, H, W) boolean masks at the image size (n full frames: costly)."""
        return (
            np.stack(list(_Pasted(self)))
            if self.crops
            else np.zeros((0, *self.shape), bool)
        )

    def to_records(self, names: Mapping[int, str] | Sequence[str]) -> list[dict]:
        """Returns one JSON-ready dict per instance.

        Args:
            names: Class names by index (a dict or a list).

        Returns:
            The detection records (`class_id`, `class_name`, `confidence`, `box`)
            plus `polygon`: the largest outline as `[[x, y], ...]`.
        """
        records = super().to_records(names)
        for record, outlines in zip(records, self.polygons, strict=True):
            record["polygon"] = outlines[0].tolist() if outlines else []
        return records

    def class_map(self) -> np.ndarray:
        """Returns the semantic class map (highest confidence wins a pixel)."""
        # One full-frame mask at a time, pasted when painted.
        return rasterise_instances(
            self.shape, self.class_ids, self.scores, masks=_Pasted(self)
        )

    def class_pixels(self, names: Mapping[int, str] | Sequence[str]) -> dict[str, int]:
        """Returns the pixels of each class in `class_map`, in class-index order."""
        class_map = self.class_map()
        ids, counts = np.unique(class_map[class_map >= 0], return_counts=True)
        return {
            _name(names, c): int(n)
            for c, n in zip(ids.tolist(), counts.tolist(), strict=True)
        }


class _Pasted(Sequence[np.ndarray]):
    """The instances' masks as full frames, each pasted when it is read."""

    def __init__(self, instances: Instances) -> None:
        self.instances = instances

    def __len__(self) -> int:
        return len(self.instances.crops)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        out = np.zeros(self.instances.shape, bool)
        x0, y0, x1, y1 = self.instances.windows[i].tolist()
        out[y0:y1, x0:x1] = self.instances.crops[i]
        return out


class OnnxSegmenter(OnnxDetector):
    """Runs an Ultralytics-exported ONNX segmentation model with ONNX Runtime.

    Boxes are decoded by `OnnxDetector` (same letterbox, NMS and box scaling,
    the thresholds of its `predict`); each kept box's mask coefficients combine
    the prototypes into mask logits that are upsampled to the original image and
    cropped to the box, as `YOLO.predict(..., retina_masks=True)` does
    (`ops.process_mask_native`). Instances whose mask is empty are dropped, as
    predict drops them. `predict` returns `Instances`.
    """

    extra_channels = "mask coefficients"

    def _read_graph(self) -> None:
        """The detector's head, plus the mask prototypes as a second output.

        Raises:
            ValueError: If the graph is not a segmentation model (no prototype
                output).
        """
        super()._read_graph()
        outputs = self.session.get_outputs()
        if len(outputs) < 2 or len(outputs[1].shape) != 4:
            raise ValueError(
                f"{self.path} has no mask prototype output; export a segmentation "
                "model (e.g. yolo11n-seg) with visionops.engine.onnx.export_onnx"
            )
        self.output_names.append(outputs[1].name)

    def _decode(self, rows: GraphRows, **thresholds: Any) -> Instances:
        raw, protos = rows.outputs
        boxes, scores, class_ids, coeffs = self._boxes(raw, **thresholds)
        boxes = scale_boxes(boxes, rows.shape, rows.input_shape)
        _check_mask_budget(len(boxes), rows.shape)
        crops, windows = _native_masks(protos, coeffs, boxes, rows.shape)
        keep = np.array([bool(crop.any()) for crop in crops], bool)
        kept = [crop for crop, k in zip(crops, keep, strict=True) if k]
        windows = windows[keep]
        return Instances(
            boxes[keep],
            np.ascontiguousarray(scores[keep], np.float32),
            np.ascontiguousarray(class_ids[keep], np.int64),
            kept,
            windows,
            (int(rows.shape[0]), int(rows.shape[1])),
            [
                [
                    outline + window[:2].astype(np.float32)
                    for outline in mask_polygons(c)
                ]
                for c, window in zip(kept, windows, strict=True)
            ],
        )


def _check_mask_budget(instances: int, shape: tuple[int, int]) -> None:
    """Refuses masks for `instances` on an image of `shape` past `MAX_MASK_PIXELS`.

    Raises:
        OverBudgetError: Naming the instances, the image and the limit.
    """
    height, width = shape
    if instances * height * width <= MAX_MASK_PIXELS:
        return
    most = MAX_MASK_PIXELS // (height * width)
    raise OverBudgetError(
        f"{instances} instances found on a {width}x{height} image; masks for at "
        f"most {most} fit the {MAX_MASK_PIXELS / 1e6:.0f} Mpx of mask work one "
        "image may take (MAX_MASK_PIXELS): raise conf, lower max_det or send a "
        "smaller image."
    )


def _native_masks(
    protos: np.ndarray, coeffs: np.ndarray, boxes: np.ndarray, shape: tuple[int, int]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Mirrors `ops.process_mask_native`: logits upsampled, thresholded, cropped.

    Only the box's window of each mask is kept (it is False outside); one
    full-frame logit map at a time is upsampled.

    Args:
        protos: (nm, mh, mw) prototypes of one image.
        coeffs: (n, nm) mask coefficients.
        boxes: (n, 4) boxes in the original image's pixels.
        shape: The original image's (height, width).

    Returns:
        Per instance its boolean mask inside its window, and the (n, 4) int64
        windows as x0, y0, x1, y1 (x1, y1 exclusive).
    """
    nm, mh, mw = protos.shape
    h, w = shape
    # The pixels `x1 <= col < x2`, `y1 <= row < y2` of each box, inside the image.
    edges = np.ceil(np.asarray(boxes, np.float64)).astype(np.int64).reshape(-1, 4)
    windows = np.clip(edges, 0, [w, h, w, h])
    windows[:, 2:] = np.maximum(windows[:, 2:], windows[:, :2])
    if not len(coeffs):
        return [], windows
    logits = (coeffs.astype(np.float32) @ protos.reshape(nm, -1)).reshape(-1, mh, mw)
    # The prototypes cover the letterboxed input at a quarter of its size; an
    # odd input padding falls between prototype pixels, so, as Ultralytics does,
    # upsample by the smallest factor (1, 2 or 4) that crops it on whole pixels.
    gain = min(4 * mh / h, 4 * mw / w)
    pad = (4 * mh - max(round(h * gain), 1)) | (4 * mw - max(round(w * gain), 1))
    factor = 4 // math.gcd(4, pad | pad // 2)
    sh, sw = mh * factor, mw * factor
    # `scale_masks`: the content window of the (upsampled) prototypes.
    gain = min(sh / h, sw / w)
    pad_w = (sw - max(round(w * gain), 1)) / 2
    pad_h = (sh - max(round(h * gain), 1)) / 2
    top, left = round(pad_h - 0.1), round(pad_w - 0.1)
    bottom = top + max(round(h * gain), 1)
    right = left + max(round(w * gain), 1)
    # cv2's INTER_LINEAR on float32 is torch's bilinear, align_corners=False.
    crops = []
    for logit, (x0, y0, x1, y1) in zip(logits, windows.tolist(), strict=True):
        if factor > 1:
            logit = cv2.resize(logit, (sw, sh), interpolation=cv2.INTER_LINEAR)
        logit = np.ascontiguousarray(logit[top:bottom, left:right])
        if logit.shape != (h, w):
            logit = cv2.resize(logit, (w, h), interpolation=cv2.INTER_LINEAR)
        crops.append(logit[y0:y1, x0:x1] > 0)
    return crops, windows
