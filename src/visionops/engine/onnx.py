"""ONNX export and what every task's ONNX Runtime predictor shares with Ultralytics."""

from __future__ import annotations

import ast
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import onnxruntime as ort

import visionops  # noqa: F401  (offline settings, before Ultralytics is imported)

# Ultralytics' `non_max_suppression` defaults: at most this many candidates enter NMS.
MAX_NMS = 30_000
# Up to this many candidates, NMS computes all pairwise IoUs in one array operation
# (a 2048 x 2048 matrix is 32 MB); above it, one row per kept box.
NMS_MATRIX = 2048
PAD_VALUE = 114  # Ultralytics' letterbox grey
# Input buffers kept per thread: one per input shape, the oldest dropped beyond this.
KEPT_SHAPES = 8
# What `timing=` receives from every predictor (`StageTimer`).
STAGES = ("preprocess", "inference", "postprocess")


class OverBudgetError(ValueError):
    """A prediction would take more memory than its predictor allows.

    The message names the limit and what to ask for instead; a service answers
    it with 413, as an image too large to decode.
    """


def export_onnx(
    weights: Path | str,
    imgsz: int,
    out_dir: Path | None = None,
    *,
    dynamic: bool = True,
    end2end: bool = False,
) -> Path:
    """Exports YOLO weights to a simplified ONNX graph with Ultralytics, offline.

    The graph carries Ultralytics' metadata (names, imgsz, stride, end2end, ...),
    which the task's predictor (`OnnxPredictor`) reads back.

    Args:
        weights: A `.pt` checkpoint, or an architecture yaml such as "yolo11n.yaml"
            (random weights, for shape checks and benchmarks).
        imgsz: The square input size the model is exported and later run at.
        out_dir: Where to put the `.onnx`. When omitted, Ultralytics' default: next
            to a `.pt` checkpoint, or the working directory for a yaml.
        dynamic: Export dynamic batch, height and width axes, so `predict_batch`
            runs a whole batch in one call.
        end2end: Export the NMS-free one-to-one head of models that have one
            (YOLO26), giving `(batch, max_det, 6)` detections instead of the
            `(batch, 4 + nc, anchors)` raw head that needs NMS. Ignored, with an
            Ultralytics warning, by models without such a head.

    Returns:
        The path of the exported `.onnx` file.
    """
    from visionops.engine.ultralytics import open_yolo

    # `nms=None` keeps the raw one-to-many head, exactly what `YOLO.predict` runs;
    # `nms=False` is Ultralytics' switch for the NMS-free head.
    options = {
        "format": "onnx",
        "imgsz": imgsz,
        "dynamic": dynamic,
        "simplify": True,
        "nms": False if end2end else None,
        "batch": 1,
        "device": "cpu",
    }
    weights = Path(weights)
    if out_dir is None:
        return Path(open_yolo(weights).export(**options))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="visionops-export-") as tmp:
        # Ultralytics writes beside the checkpoint; exporting from a private copy
        # keeps a (possibly read-only or shared) weights folder untouched.
        source = weights
        if weights.is_file():
            source = Path(tmp) / weights.name
            shutil.copy2(weights, source)
        exported = Path(open_yolo(source).export(**options))
        target = out_dir / exported.name
        shutil.move(str(exported), target)
    return target


def _name(names: Mapping[int, str] | Sequence[str], class_id: int) -> str:
    try:
        return str(names[int(class_id)])
    except (KeyError, IndexError):
        return str(class_id)


def _letterbox_params(
    shape: tuple[int, int], size: tuple[int, int], auto: bool, stride: int
) -> tuple[float, tuple[int, int], tuple[int, int, int, int]]:
    """Mirrors `LetterBox.get_params(scaleup=True, center=True)`.

    Returns:
        The ratio, the resized (width, height) and the (top, bottom, left, right)
        padding.
    """
    h, w = shape
    r = min(size[0] / h, size[1] / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    pad_w, pad_h = size[1] - new_w, size[0] - new_h
    if auto:  # the smallest stride multiple that holds the resized image
        pad_w, pad_h = pad_w % stride, pad_h % stride
    dw, dh = pad_w / 2, pad_h / 2
    # The +-0.1 splits an odd padding the way Ultralytics does (extra pixel last).
    padding = round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)
    return r, (new_w, new_h), padding


def _padded_shape(
    shape: tuple[int, int], size: tuple[int, int], auto: bool, stride: int
) -> tuple[int, int]:
    """Returns the (height, width) that `letterbox` gives an image of `shape`."""
    _, (new_w, new_h), (top, bottom, left, right) = _letterbox_params(
        shape, size, auto, stride
    )
    return new_h + top + bottom, new_w + left + right


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        return int(size), int(size)
    height, width = size
    return int(height), int(width)


def letterbox(
    image: np.ndarray,
    size: int | tuple[int, int],
    color: int = 114,
    *,
    auto: bool = False,
    stride: int = 32,
) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resizes keeping the aspect ratio and pads, exactly as Ultralytics' `LetterBox`.

    Bilinear resize (up or down) and centred constant padding, so an ONNX model
    sees the very pixels `YOLO.predict` feeds the PyTorch model.

    Args:
        image: An (H, W, C) image.
        size: The target side, or (height, width).
        color: The padding value for every channel.
        auto: Pad only up to the next multiple of `stride` (`LetterBox(auto=True)`,
            what predict does for graphs with dynamic height and width) instead
            of all the way to `size` (`auto=False`, fixed-size graphs).
        stride: The model's largest stride, used when `auto`.

    Returns:
        The padded image, the resize ratio, and the (left, top) padding in pixels.
    """
    size = _size_pair(size)
    ratio, (new_w, new_h), (top, bottom, left, right) = _letterbox_params(
        image.shape[:2], size, auto, stride
    )
    # One copy: the resize writes straight into the padded array's interior.
    padded = np.full(
        (new_h + top + bottom, new_w + left + right, image.shape[2]),
        color,
        image.dtype,
    )
    interior = padded[top : top + new_h, left : left + new_w]
    if image.shape[:2] == (new_h, new_w):
        interior[...] = image
    else:
        cv2.resize(image, (new_w, new_h), dst=interior, interpolation=cv2.INTER_LINEAR)
    return padded, ratio, (float(left), float(top))


def nms(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    iou: float,
    class_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression, class-aware when `class_ids` is given.

    Classes are kept apart by shifting each class's boxes by a multiple of the
    coordinate span (torchvision's `batched_nms` trick), so one pass serves all.

    Args:
        boxes_xyxy: (n, 4) boxes as x1, y1, x2, y2.
        scores: (n,) scores.
        iou: Boxes overlapping a kept box by more than this IoU are dropped.
        class_ids: (n,) class indices; omitted, all boxes compete.

    Returns:
        The kept indices, int64, highest score first.

    Raises:
        ValueError: If the shapes disagree.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (boxes.shape[0],):
        raise ValueError(
            f"nms needs boxes (n, 4) and scores (n,), got {boxes.shape} and "
            f"{scores.shape}"
        )
    if boxes.shape[0] == 0:
        return np.zeros(0, np.int64)
    if class_ids is not None:
        class_ids = np.asarray(class_ids)
        if class_ids.shape != scores.shape:
            raise ValueError(
                f"class_ids has shape {class_ids.shape}, expected {scores.shape}"
            )
        span = boxes.max() - min(boxes.min(), 0.0) + 1.0
        boxes = boxes + class_ids.astype(np.float64)[:, None] * span
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    if order.size <= NMS_MATRIX:
        return _nms_matrix(boxes[order], areas[order], iou, order)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        inter = np.clip(
            np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None
        ) * np.clip(
            np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None
        )
        union = areas[best] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


def _nms_matrix(
    boxes: np.ndarray, areas: np.ndarray, iou: float, order: np.ndarray
) -> np.ndarray:
    """Greedy NMS of boxes sorted by score, from their IoU matrix at once.

    The same arithmetic as the row-by-row loop, so the same boxes are kept; the
    greedy pass that remains only reads booleans.
    """
    x1, y1, x2, y2 = boxes.T
    inter = np.clip(
        np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]), 0, None
    ) * np.clip(
        np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]), 0, None
    )
    union = areas[:, None] + areas[None] - inter
    overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    # Only a higher-scored box can suppress a lower one.
    suppresses = np.triu(overlap > iou, k=1)
    removed = np.zeros(len(boxes), bool)
    keep = []
    for i in range(len(boxes)):
        if not removed[i]:
            keep.append(i)
            removed |= suppresses[i]
    return order[np.asarray(keep, dtype=np.int64)]


class StageTimer:
    """Milliseconds per prediction stage, summed over a call's laps.

    What every predictor's `timing=` receives: `preprocess` (resizing and the
    input blob), `inference` (the ONNX Runtime calls only) and `postprocess`
    (decoding, NMS, masks, results). Each lap charges the time since the
    previous one to a stage, so the stages add up to the whole call.
    """

    def __init__(self) -> None:
        self.spent = dict.fromkeys(STAGES, 0.0)
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Charges the time since the previous lap (or the start) to `stage`."""
        now = time.perf_counter()
        self.spent[stage] += (now - self._last) * 1000
        self._last = now

    def report(self, timing: dict[str, float] | None) -> None:
        """Writes the stages into `timing` when the caller asked for them."""
        if timing is not None:
            timing.update(self.spent)


class _Buffers(threading.local):
    """Arrays kept between calls, one set per thread (requests served in
    parallel threads never share one), keyed by purpose and shape."""

    def __init__(self) -> None:
        self.arrays: dict[tuple, np.ndarray] = {}

    def get(self, key: tuple, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        array = self.arrays.pop(key, None)
        if array is None:
            array = np.empty(shape, dtype)
            if len(self.arrays) >= KEPT_SHAPES:  # the least recently used goes
                del self.arrays[next(iter(self.arrays))]
        self.arrays[key] = array  # most recently used last
        return array


def _check_image(image: object, index: int | None = None) -> np.ndarray:
    where = "image" if index is None else f"image {index}"
    if image is None:
        raise ValueError(f"{where} is None; pass a BGR uint8 array (H, W, 3)")
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"{where} is a {type(image).__name__}; pass a BGR uint8 numpy array "
            "(H, W, 3), e.g. from cv2.imread"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"{where} has dtype {image.dtype}; expected uint8 (0-255)")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"{where} has shape {image.shape}; expected (H, W, 3) BGR, convert "
            "grey or BGRA images with cv2.cvtColor first"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{where} is empty (shape {image.shape})")
    return image


def _metadata_value(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def open_session(
    onnx_path: Path, threads: int = 1, providers: list[str] | None = None
) -> tuple[ort.InferenceSession, dict[str, str], dict[int, str]]:
    """Opens an Ultralytics ONNX export as every predictor runs it.

    One intra-op thread per call by default, sequential execution, all graph
    optimisations; the CPU provider when none is given.

    Returns:
        The session, Ultralytics' metadata, and the class names by index.

    Raises:
        ValueError: If the graph lacks Ultralytics' class names.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        str(onnx_path),
        sess_options=options,
        providers=providers or ["CPUExecutionProvider"],
    )
    meta = session.get_modelmeta().custom_metadata_map
    names = _metadata_value(meta.get("names"))
    if not isinstance(names, dict):
        raise ValueError(
            f"{onnx_path} has no Ultralytics class names in its metadata; "
            "export it with visionops.engine.onnx.export_onnx"
        )
    return session, meta, {int(k): str(v) for k, v in names.items()}


def scale_boxes(
    boxes: np.ndarray, shape: tuple[int, int], input_shape: tuple[int, int]
) -> np.ndarray:
    """Maps letterboxed input-space boxes back onto the original image.

    Ultralytics' `scale_boxes`: it re-derives the gain and padding from the
    padded input's shape and uses per-axis gains of the rounded resized size;
    so does this. Boxes are clipped to the image.

    Args:
        boxes: (n, 4) x1, y1, x2, y2 boxes in the input's pixels.
        shape: The original image's (height, width).
        input_shape: The letterboxed input's (height, width).

    Returns:
        (n, 4) contiguous float32 boxes in the original image's pixels.
    """
    h, w = shape
    gain = min(input_shape[0] / h, input_shape[1] / w)
    new_h, new_w = max(round(h * gain), 1), max(round(w * gain), 1)
    pad_x = round((input_shape[1] - new_w) / 2 - 0.1)
    pad_y = round((input_shape[0] - new_h) / 2 - 0.1)
    scale = np.array([new_w / w, new_h / h] * 2, np.float32)
    boxes = (
        boxes.astype(np.float32) - np.array([pad_x, pad_y] * 2, np.float32)
    ) / scale
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
    return np.ascontiguousarray(boxes, np.float32)


@dataclass(frozen=True)
class GraphRows:
    """One image's share of a graph run, as a predictor's `_decode` reads it.

    Attributes:
        outputs: The image's row of each output in `output_names`.
        shape: The original image's (height, width).
        input_shape: The (height, width) it was fed to the graph at.
    """

    outputs: list[np.ndarray]
    shape: tuple[int, int]
    input_shape: tuple[int, int]


class OnnxPredictor:
    """Runs an Ultralytics ONNX export with ONNX Runtime, no torch.

    What every task's predictor shares: the session, the class names and input
    size from Ultralytics' metadata, image checks, batching (images that share
    an input shape share one ONNX Runtime call) and the stage timing. Inputs
    are letterboxed as `YOLO.predict` does (to the next stride multiple for
    graphs with dynamic height and width, like predict's `rect`, else to the
    full size), RGB, /255. A task's predictor subclasses it with its decoding
    (`_decode`) and, where its preprocessing differs, `_input_shape` and `_fill`.

    Attributes:
        names: Class names by index, from the ONNX metadata.
        imgsz: The (height, width) images are fitted into.
        stride: The model's largest stride.
        input_name: The graph's image input.
        dynamic_batch: Whether one call can take a batch of any size.
        rect: Whether the graph takes any height and width.
        metadata: Ultralytics' metadata, as the graph stores it (text values).
    """

    # The input size of graphs with dynamic height and width and no `imgsz`.
    default_imgsz: ClassVar[int] = 640

    def __init__(
        self,
        onnx_path: Path | str,
        *,
        threads: int = 1,
        providers: list[str] | None = None,
    ) -> None:
        """Opens the ONNX model and reads Ultralytics' metadata from it.

        Args:
            onnx_path: An `.onnx` written by `export_onnx` (or Ultralytics).
            threads: ONNX Runtime intra-op threads. Small images gain little from
                more; a server scales with workers instead.
            providers: ONNX Runtime execution providers, CPU when omitted.

        Raises:
            ValueError: If the graph lacks Ultralytics' class names, or is not
                the task's model (`_read_graph`).
        """
        self.path = Path(onnx_path)
        self.session, self.metadata, self.names = open_session(
            self.path, threads, providers
        )
        graph_input = self.session.get_inputs()[0]
        self.input_name: str = graph_input.name
        batch, _, height, width = graph_input.shape
        self.dynamic_batch = not isinstance(batch, int)
        self._batch = None if self.dynamic_batch else batch
        self.rect = not (isinstance(height, int) and isinstance(width, int))
        self.imgsz: tuple[int, int] = (
            _size_pair(self.meta("imgsz") or self.default_imgsz)
            if self.rect
            else (height, width)
        )
        self.stride = int(self.meta("stride") or 32)
        # The outputs `_decode` receives; a subclass may name more.
        self.output_names = [self.session.get_outputs()[0].name]
        self._buffers = _Buffers()
        self._read_graph()

    def _read_graph(self) -> None:
        """Reads what the task's decoding needs from the opened graph.

        Raises:
            ValueError: If the graph is not the task's model.
        """

    def meta(self, key: str) -> Any:
        """An Ultralytics metadata value as a Python value (None when absent)."""
        return _metadata_value(self.metadata.get(key))

    def predict(
        self,
        image_bgr: np.ndarray,
        *,
        timing: dict[str, float] | None = None,
        **options: Any,
    ) -> Any:
        """Predicts one BGR image.

        Args:
            image_bgr: A uint8 (H, W, 3) BGR image, as from `cv2.imread`.
            timing: When given, receives the milliseconds of each stage:
                `preprocess` (resizing, the input blob), `inference` (the ONNX
                Runtime call) and `postprocess` (decoding, results).
            **options: The task's decoding options (thresholds).

        Returns:
            The task's prediction for the image.

        Raises:
            ValueError: If the image is not a non-empty uint8 (H, W, 3) array.
        """
        return self.predict_batch([image_bgr], timing=timing, **options)[0]

    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        *,
        timing: dict[str, float] | None = None,
        **options: Any,
    ) -> list[Any]:
        """Predicts several BGR images, batching what the graph allows.

        Images that come to the same input shape (all of them for a fixed-size
        graph) share one ONNX Runtime call when the graph has a dynamic batch
        axis (a fixed batch is filled chunk by chunk), so the results equal
        `predict` image by image.

        Args:
            images: uint8 (H, W, 3) BGR images of any sizes.
            timing: When given, receives the milliseconds of each stage, summed
                over the batch (see `predict`).
            **options: The task's decoding options (thresholds).

        Returns:
            One prediction per image, in order.

        Raises:
            ValueError: If an image is invalid (the message names its index).
        """
        timer = StageTimer()
        if images is None or isinstance(images, np.ndarray):
            raise ValueError("predict_batch takes a list of images")
        checked = [_check_image(image, i) for i, image in enumerate(images)]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(checked):
            groups.setdefault(self._input_shape(image), []).append(i)
        results: list[Any] = [None] * len(checked)
        for input_shape, indices in groups.items():
            blob = self._blob([checked[i] for i in indices], input_shape)
            timer.lap("preprocess")
            outputs = self._run(blob, len(indices))
            timer.lap("inference")
            for row, i in enumerate(indices):
                rows = GraphRows(
                    [output[row] for output in outputs],
                    checked[i].shape[:2],
                    input_shape,
                )
                results[i] = self._decode(rows, **options)
            timer.lap("postprocess")
        timer.report(timing)
        return results

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """The input blob `predict` feeds the graph for one BGR image.

        What INT8 calibration must see.

        Returns:
            A (1, 3, h, w) float32 array, the caller's own copy.
        """
        image = _check_image(image_bgr)
        return self._blob([image], self._input_shape(image))[:1].copy()

    def _decode(self, rows: GraphRows, **options: Any) -> Any:
        """Turns one image's rows of the graph's outputs into its prediction.

        Args:
            rows: The image's rows and sizes.
            **options: The task's decoding options.
        """
        raise NotImplementedError

    def _input_shape(self, image: np.ndarray) -> tuple[int, int]:
        """The (height, width) the image is fed to the graph at (letterboxed)."""
        return _padded_shape(image.shape[:2], self.imgsz, self.rect, self.stride)

    def _blob(self, images: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
        """Fills images of one input shape into this thread's kept input buffer.

        A fixed-batch graph gets its batch filled up with blank images.
        """
        step = self._batch or len(images)
        rows = -(-len(images) // step) * step
        height, width = shape
        blob = self._buffers.get(
            ("blob", rows, height, width), (rows, 3, height, width), np.float32
        )
        for out, image in zip(blob, images, strict=False):
            self._fill(out, image)
        blob[len(images) :] = 0.0
        return blob

    def _fill(self, out: np.ndarray, image: np.ndarray) -> None:
        """Letterboxes one image into its (3, h, w) row of the blob: RGB, CHW,
        /255 in float32, as `letterbox` and predict do.

        The image is resized once (into a kept buffer) and converted once into
        the row; only the padding strips are filled.
        """
        _, (new_w, new_h), (top, _, left, _) = _letterbox_params(
            image.shape[:2], self.imgsz, self.rect, self.stride
        )
        resized = image
        if image.shape[:2] != (new_h, new_w):
            resized = self._buffers.get(
                ("resized", new_h, new_w), (new_h, new_w, 3), np.uint8
            )
            cv2.resize(
                image, (new_w, new_h), dst=resized, interpolation=cv2.INTER_LINEAR
            )
        pad = np.float32(PAD_VALUE) / np.float32(255)
        bottom, right = top + new_h, left + new_w
        out[:, :top] = pad
        out[:, bottom:] = pad
        out[:, top:bottom, :left] = pad
        out[:, top:bottom, right:] = pad
        # BGR->RGB and HWC->CHW as views; one uint8 -> float32 pass, divided in
        # float32 exactly like predict's `im.float() / 255`.
        np.divide(
            resized[..., ::-1].transpose(2, 0, 1),
            np.float32(255),
            out=out[:, top:bottom, left:right],
        )

    def _run(self, blob: np.ndarray, real: int) -> list[np.ndarray]:
        """Runs a blob through the graph, in chunks of its fixed batch if it has
        one; returns the rows of the first `real` images of each output in
        `output_names`."""
        step = self._batch or len(blob)
        chunks = [
            self.session.run(self.output_names, {self.input_name: blob[i : i + step]})
            for i in range(0, len(blob), step)
        ]
        return [
            (parts[0] if len(parts) == 1 else np.concatenate(parts))[:real]
            for parts in zip(*chunks, strict=True)
        ]
