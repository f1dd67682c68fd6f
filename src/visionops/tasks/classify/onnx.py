"""ONNX Runtime classification that reproduces Ultralytics' classify predict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from visionops.engine.onnx import (
    StageTimer,
    _check_image,
    _metadata_value,
    _name,
    _size_pair,
    open_session,
)

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


class OnnxClassifier:
    """Runs an Ultralytics-exported ONNX classifier with ONNX Runtime, no torch.

    Preprocessing mirrors `YOLO(...).predict` for classify models (see
    `classify_preprocess`) and the graph ends with Ultralytics' softmax, so the
    probabilities equal the PyTorch model's up to float noise.

    Attributes:
        names: Class names by index, from the ONNX metadata.
        imgsz: The (height, width) images are resized and cropped to.
        input_name: The graph's image input.
        dynamic_batch: Whether one call can take a batch of any size.
    """

    def __init__(
        self,
        onnx_path: Path | str,
        *,
        threads: int = 1,
        providers: list[str] | None = None,
    ) -> None:
        """Opens the ONNX model and reads Ultralytics' metadata from it.

        Args:
            onnx_path: An `.onnx` of a `-cls` model written by
                `visionops.engine.onnx.export_onnx` (or Ultralytics).
            threads: ONNX Runtime intra-op threads.
            providers: ONNX Runtime execution providers, CPU when omitted.

        Raises:
            ValueError: If the graph lacks Ultralytics' class names or is not a
                classifier (e.g. a detector's export).
        """
        self.path = Path(onnx_path)
        self.session, meta, self.names = open_session(self.path, threads, providers)
        task = meta.get("task")
        output = self.session.get_outputs()[0]
        if (task is not None and task != "classify") or len(output.shape) != 2:
            raise ValueError(
                f"{self.path} is not a classifier (task {task!r}, output shape "
                f"{output.shape}); export a -cls model"
            )
        self._output_name = output.name

        graph_input = self.session.get_inputs()[0]
        self.input_name: str = graph_input.name
        batch, _, height, width = graph_input.shape
        self.dynamic_batch = not isinstance(batch, int)
        self._batch = None if self.dynamic_batch else batch
        if isinstance(height, int) and isinstance(width, int):
            self.imgsz: tuple[int, int] = (height, width)
        else:
            self.imgsz = _size_pair(_metadata_value(meta.get("imgsz")) or 224)

    def predict(
        self, image_bgr: np.ndarray, *, timing: dict[str, float] | None = None
    ) -> Classification:
        """Classifies one BGR image.

        Args:
            image_bgr: A uint8 (H, W, 3) BGR image, as from `cv2.imread`.
            timing: When given, receives the milliseconds of each stage:
                `preprocess` (resize, crop, the input blob), `inference` (the
                ONNX Runtime call, softmax included) and `postprocess` (the
                probabilities per image).

        Returns:
            The class probabilities.

        Raises:
            ValueError: If the image is not a non-empty uint8 (H, W, 3) array.
        """
        return self.predict_batch([image_bgr], timing=timing)[0]

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """The input blob `predict` feeds the graph for one BGR image.

        Returns:
            A (1, 3, height, width) float32 array (`classify_preprocess`).
        """
        return classify_preprocess(_check_image(image_bgr), self.imgsz)[None]

    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        *,
        timing: dict[str, float] | None = None,
    ) -> list[Classification]:
        """Classifies several BGR images of any sizes, in as few calls as allowed.

        Every image is brought to `imgsz`, so a graph with a dynamic batch axis
        takes them all at once (a fixed batch is filled chunk by chunk).

        Args:
            images: uint8 (H, W, 3) BGR images.
            timing: When given, receives the milliseconds of each stage, summed
                over the batch (see `predict`).

        Returns:
            One `Classification` per image, in order.

        Raises:
            ValueError: If an image is invalid (the message names its index).
        """
        timer = StageTimer()
        if images is None or isinstance(images, np.ndarray):
            raise ValueError("predict_batch takes a list of images")
        checked = [_check_image(image, i) for i, image in enumerate(images)]
        if not checked:
            timer.report(timing)
            return []
        blob = np.stack([classify_preprocess(image, self.imgsz) for image in checked])
        step = self._batch or len(blob)
        outputs = []
        for start in range(0, len(blob), step):
            chunk = blob[start : start + step]
            real = len(chunk)
            if real < step:  # a fixed batch larger than what is left: pad with blanks
                blank = np.zeros((step - real, *chunk.shape[1:]), np.float32)
                chunk = np.concatenate([chunk, blank])
            timer.lap("preprocess")
            out = self.session.run([self._output_name], {self.input_name: chunk})[0]
            timer.lap("inference")
            outputs.append(out[:real])
        probabilities = np.concatenate(outputs).astype(np.float32, copy=False)
        found = [Classification(np.ascontiguousarray(row)) for row in probabilities]
        timer.lap("postprocess")
        timer.report(timing)
        return found
