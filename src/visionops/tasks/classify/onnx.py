"""ONNX Runtime classification that reproduces Ultralytics' classify predict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from visionops.engine.onnx import GraphRows, OnnxPredictor, _name, _size_pair

# `ultralytics.data.augment.DEFAULT_MEAN` / `DEFAULT_STD`, which
# `classify_transforms` normalises with: inputs stay in 0..1.
MEAN = np.array([0.0, 0.0, 0.0], np.float32)
STD = np.array([1.0, 1.0, 1.0], np.float32)


@dataclass(eq=False)
class Classification:
    """Class probabilities of one image.

    Attributes:
        probabilities: (C,) float32 probabilities by class id (the softmax the
            model ends with; they sum to 1).
    """

    probabilities: np.ndarray

    def __len__(self) -> int:
        return int(self.probabilities.shape[0])

    @property
    def class_id(self) -> int:
        """The most probable class (the lowest id on a tie)."""
        return int(np.argmax(self.probabilities))

    @property
    def probability(self) -> float:
        """The probability of the most probable class."""
        return float(self.probabilities[self.class_id])

    def top(self, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Returns the k most probable classes, highest first.

        Args:
            k: How many classes; all of them when there are fewer.

        Returns:
            (k,) int64 class ids and (k,) float32 probabilities; equal
            probabilities keep the lower class id first.
        """
        order = np.argsort(-self.probabilities, kind="stable")[: max(k, 0)]
        return order.astype(np.int64), self.probabilities[order]

    def to_records(
        self, names: Mapping[int, str] | Sequence[str], k: int = 5
    ) -> list[dict]:
        """Returns the k most probable classes as JSON-ready dicts.

        Args:
            names: Class names by index (a dict or a list).
            k: How many classes; all of them when there are fewer.

        Returns:
            `[{"class_id", "class_name", "probability"}]`, highest first.
        """
        ids, probabilities = self.top(k)
        return [
            {
                "class_id": int(class_id),
                "class_name": _name(names, class_id),
                "probability": float(probability),
            }
            for class_id, probability in zip(
                ids.tolist(), probabilities.tolist(), strict=True
            )
        ]


def classify_preprocess(
    image_bgr: np.ndarray, imgsz: int | Sequence[int]
) -> np.ndarray:
    """Prepares one BGR image exactly as Ultralytics' classify predict does.

    `classify_transforms(imgsz)` as `ClassificationPredictor` runs it: torchvision's
    `Resize` (a square size scales the short side to it, the long side to
    `int(size * long / short)`; a (height, width) size resizes to exactly that)
    with PIL's antialiased bilinear filter, `CenterCrop` (offsets rounded as
    torchvision does), BGR to RGB, /255 and `Normalize(MEAN, STD)`. Pillow does
    the resizing here too, so the pixels are the very ones predict feeds the
    model (OpenCV's bilinear resize differs by up to tens of grey levels).

    Args:
        image_bgr: A uint8 (H, W, 3) BGR image.
        imgsz: The model's input side, or (height, width).

    Returns:
        A (3, height, width) float32 RGB array.
    """
    height, width = _size_pair(imgsz)
    # Resizing and cropping work channel by channel: BGR goes through PIL as is.
    image = Image.fromarray(image_bgr)
    w, h = image.size
    if height == width:
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = height, int(height * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    else:
        new_w, new_h = width, height
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top = int(round((new_h - height) / 2.0))
    left = int(round((new_w - width) / 2.0))
    image = image.crop((left, top, left + width, top + height))
    rgb = np.asarray(image)[..., ::-1].transpose(2, 0, 1).astype(np.float32)
    rgb /= 255.0
    return (rgb - MEAN[:, None, None]) / STD[:, None, None]


class OnnxClassifier(OnnxPredictor):
    """Runs an Ultralytics-exported ONNX classifier with ONNX Runtime, no torch.

    Preprocessing mirrors `YOLO(...).predict` for classify models (see
    `classify_preprocess`) and the graph ends with Ultralytics' softmax, so the
    probabilities equal the PyTorch model's up to float noise. Every image is
    brought to `imgsz`, so a graph with a dynamic batch axis takes a whole
    batch at once. `predict` returns a `Classification` and takes no threshold.
    """

    default_imgsz = 224

    def _read_graph(self) -> None:
        """Checks that the graph is a classifier.

        Raises:
            ValueError: If it is not (e.g. a detector's export).
        """
        task = self.metadata.get("task")
        output = self.session.get_outputs()[0]
        if (task is not None and task != "classify") or len(output.shape) != 2:
            raise ValueError(
                f"{self.path} is not a classifier (task {task!r}, output shape "
                f"{output.shape}); export a -cls model"
            )

    def _decode(self, rows: GraphRows, **options: Any) -> Classification:
        return Classification(np.ascontiguousarray(rows.outputs[0], np.float32))

    def _input_shape(self, image: np.ndarray) -> tuple[int, int]:
        """Every image is resized and cropped to `imgsz`."""
        return self.imgsz

    def _fill(self, out: np.ndarray, image: np.ndarray) -> None:
        """Writes `classify_preprocess` of one image into its row of the blob."""
        out[...] = classify_preprocess(image, self.imgsz)
