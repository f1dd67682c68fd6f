"""ONNX Runtime detection that reproduces Ultralytics' predict: boxes, NMS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from visionops.engine.onnx import (
    MAX_NMS,
    GraphRows,
    OnnxPredictor,
    _name,
    nms,
    scale_boxes,
)
from visionops.engine.task import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET

# Ultralytics' predict defaults, what the service, batch and pyfunc start from.


@dataclass(eq=False)
class Detections:
    """Detections of one image, in the original image's pixel coordinates.

    Attributes:
        boxes: (n, 4) float32 boxes as x1, y1, x2, y2.
        scores: (n,) float32 confidences, highest first.
        class_ids: (n,) int64 class indices.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        """Returns detections with no box."""
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        )

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to_records(self, names: Mapping[int, str] | Sequence[str]) -> list[dict]:
        """Returns one JSON-ready dict per box.

        Args:
            names: Class names by index (a dict or a list).

        Returns:
            `[{"class_id", "class_name", "confidence", "box": {"x1", "y1", "x2",
            "y2"}}]`, in the order of the detections.
        """
        records = []
        for (x1, y1, x2, y2), score, class_id in zip(
            self.boxes.tolist(),
            self.scores.tolist(),
            self.class_ids.tolist(),
            strict=True,
        ):
            records.append(
                {
                    "class_id": int(class_id),
                    "class_name": _name(names, class_id),
                    "confidence": float(score),
                    "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
                }
            )
        return records

    def counts(self, names: Mapping[int, str] | Sequence[str]) -> dict[str, int]:
        """Returns the number of boxes per class name, in class-index order."""
        ids, numbers = np.unique(self.class_ids, return_counts=True)
        return {
            _name(names, c): int(n)
            for c, n in zip(ids.tolist(), numbers.tolist(), strict=True)
        }


class OnnxDetector(OnnxPredictor):
    """Runs an Ultralytics-exported ONNX detector with ONNX Runtime, no torch.

    Preprocessing (`OnnxPredictor`) and decoding mirror `YOLO.predict`:
    letterbox, RGB /255, confidence filter, class-aware NMS, max_det, boxes
    scaled back and clipped. Results agree with the PyTorch model up to float
    noise.

    Attributes:
        end2end: Whether the graph emits NMS-free `(batch, k, 6)` detections.
    """

    # What a head row holds after the box and class scores (a segmenter's mask
    # coefficients); a detector's rows end with the scores.
    extra_channels: ClassVar[str] = ""

    def _read_graph(self) -> None:
        """Tells the head's kind: NMS-free `(batch, k, 6)` or raw."""
        output = self.session.get_outputs()[0]
        end2end = self.meta("end2end")
        if end2end is None:  # foreign exports: tell the heads apart by the shape
            end2end = output.shape[-1] == 6 and output.shape[1] != 4 + len(self.names)
        self.end2end = bool(end2end)

    def predict(  # type: ignore[override]
        self,
        image_bgr: np.ndarray,
        conf: float = DEFAULT_CONF,
        iou: float = DEFAULT_IOU,
        max_det: int = DEFAULT_MAX_DET,
        *,
        timing: dict[str, float] | None = None,
    ) -> Detections:
        """Detects objects in one BGR image.

        Args:
            image_bgr: A uint8 (H, W, 3) BGR image, as from `cv2.imread`.
            conf: Keep boxes scoring above this.
            iou: NMS IoU threshold (unused by NMS-free graphs).
            max_det: Keep at most this many boxes.
            timing: When given, receives the milliseconds of each stage:
                `preprocess` (letterbox, RGB, /255), `inference` (the ONNX
                Runtime call) and `postprocess` (decoding, NMS, scaling).

        Returns:
            The detections in the image's pixel coordinates.

        Raises:
            ValueError: If the image is not a non-empty uint8 (H, W, 3) array.
        """
        return self.predict_batch(
            [image_bgr], conf=conf, iou=iou, max_det=max_det, timing=timing
        )[0]

    def predict_batch(  # type: ignore[override]
        self,
        images: Sequence[np.ndarray],
        conf: float = DEFAULT_CONF,
        iou: float = DEFAULT_IOU,
        max_det: int = DEFAULT_MAX_DET,
        *,
        timing: dict[str, float] | None = None,
    ) -> list[Detections]:
        """Detects objects in several BGR images, batching what the graph allows.

        Args:
            images: uint8 (H, W, 3) BGR images of any sizes.
            conf: Keep boxes scoring above this.
            iou: NMS IoU threshold (unused by NMS-free graphs).
            max_det: Keep at most this many boxes per image.
            timing: When given, receives the milliseconds of each stage, summed
                over the batch (see `predict`).

        Returns:
            One `Detections` per image, in order (`OnnxPredictor.predict_batch`).

        Raises:
            ValueError: If an image is invalid (the message names its index).
        """
        return super().predict_batch(
            images, timing=timing, conf=conf, iou=iou, max_det=max_det
        )

    def _decode(self, rows: GraphRows, **thresholds: Any) -> Detections:
        boxes, scores, class_ids, _ = self._boxes(rows.outputs[0], **thresholds)
        return Detections(
            scale_boxes(boxes, rows.shape, rows.input_shape),
            np.ascontiguousarray(scores, np.float32),
            np.ascontiguousarray(class_ids, np.int64),
        )

    def _boxes(
        self, pred: np.ndarray, conf: float, iou: float, max_det: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Decodes one image's head output, as the head's kind asks.

        Returns:
            The kept boxes (x1, y1, x2, y2 in the input's pixels), their scores
            and class ids, and their channels after the class scores (`(n, 0)`
            for a detector, a segmenter's mask coefficients).
        """
        if self.end2end:
            return self._decode_end2end(pred, conf, max_det)
        return self._decode_raw(pred, conf, iou, max_det)

    def _decode_raw(
        self, pred: np.ndarray, conf: float, iou: float, max_det: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Decodes a `(4 + nc [+ extra], anchors)` head: cx, cy, w, h, scores."""
        nc = len(self.names)
        extra = pred.shape[0] - 4 - nc if pred.ndim == 2 else -1
        if extra < 0 or bool(extra) != bool(self.extra_channels):
            expected = " + ".join(("4", "nc", self.extra_channels)).rstrip(" +")
            raise ValueError(
                f"unexpected output {pred.shape} for {nc} classes; "
                f"expected ({expected}, anchors)"
            )
        class_scores = pred[4 : 4 + nc]
        best = class_scores.max(axis=0)
        candidates = np.flatnonzero(best > conf)
        if candidates.size > MAX_NMS:
            top = np.argsort(-best[candidates], kind="stable")[:MAX_NMS]
            candidates = candidates[top]
        scores = best[candidates]
        class_ids = class_scores[:, candidates].argmax(axis=0).astype(np.int64)
        cx, cy, w, h = pred[:4, candidates]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        keep = nms(boxes, scores, iou, class_ids)[:max_det]
        rest = pred[4 + nc :, candidates[keep]].T
        return boxes[keep], scores[keep], class_ids[keep], rest

    def _decode_end2end(
        self, pred: np.ndarray, conf: float, max_det: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Decodes a `(k, 6 [+ extra])` NMS-free head: x1, y1, x2, y2, score, cls."""
        extra = pred.shape[1] - 6 if pred.ndim == 2 else -1
        if extra < 0 or bool(extra) != bool(self.extra_channels):
            expected = " + ".join(("6", self.extra_channels)).rstrip(" +")
            raise ValueError(
                f"unexpected end2end output {pred.shape}; expected (k, {expected})"
            )
        pred = pred[pred[:, 4] > conf][:max_det]
        return pred[:, :4], pred[:, 4], pred[:, 5].astype(np.int64), pred[:, 6:]
