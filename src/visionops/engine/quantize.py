"""Static INT8 quantization (QDQ, per-channel) of Ultralytics ONNX exports."""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

import visionops  # noqa: F401  (offline settings, before Ultralytics is imported)

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# Metadata key recording how the model was quantized; the predictors ignore it.
QUANTIZATION_KEY = "visionops_quantization"

Preprocess = Callable[[np.ndarray], np.ndarray]


class QuantizationError(ValueError):
    """The model or the calibration images cannot be quantized as asked."""


def calibration_files(images: Path | str | Iterable[Path | str]) -> list[Path]:
    """Lists calibration images: the image files of a folder (recursively), or paths.

    Args:
        images: A folder, or image file paths.

    Returns:
        The image paths, sorted for a folder, in the given order otherwise.

    Raises:
        QuantizationError: If there is no image, or a given path is not a file.
    """
    if isinstance(images, str | Path):
        folder = Path(images)
        if not folder.is_dir():
            raise QuantizationError(
                f"Calibration images: {folder} is not a folder; pass a folder of "
                "images or a list of image files."
            )
        files = sorted(
            p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
        )
        where = f"in {folder}"
    else:
        files = [Path(p) for p in images]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise QuantizationError(
                f"Calibration images not found: {', '.join(missing[:5])}"
            )
        where = "in the given list"
    if not files:
        raise QuantizationError(
            f"No calibration images {where} (looked for {', '.join(IMAGE_SUFFIXES)}): "
            "static INT8 quantization needs representative images, e.g. the "
            "dataset's validation split."
        )
    return files


class ImageCalibrationReader:
    """ONNX Runtime `CalibrationDataReader` over image files, one blob per image."""

    def __init__(
        self, files: Sequence[Path], input_name: str, preprocess: Preprocess
    ) -> None:
        """Prepares to feed `files` through `preprocess` to input `input_name`."""
        self.files = list(files)
        self.input_name = input_name
        self.preprocess = preprocess
        self._iter: Iterator[Path] = iter(self.files)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """Returns the next image's input feed, or None when all were given."""
        path = next(self._iter, None)
        if path is None:
            return None
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise QuantizationError(f"Calibration image {path} cannot be decoded.")
        return {self.input_name: self.preprocess(image)}

    def rewind(self) -> None:
        """Starts again from the first image."""
        self._iter = iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


def head_decode_nodes(model) -> list[str]:
    """Names the nodes of an Ultralytics head's decoding, kept in float.

    The last module (`/model.N/`) turns its convolution branches (`cv2`, `cv3`,
    `cv4`, `proto`, and YOLO26's `one2one_*` copies) into boxes and scores: a
    DFL softmax, anchor arithmetic, and one concatenation of pixel coordinates
    (0..imgsz) with probabilities (0..1). One 8-bit scale for that tensor would
    erase the scores, so everything of the last module outside its branches
    stays in float; it costs little time.

    Args:
        model: An `onnx.ModelProto` of an Ultralytics export.

    Returns:
        Node names to pass as `nodes_to_exclude`; empty for foreign graphs.
    """
    pattern = re.compile(r"^/model\.(\d+)/")
    found = (pattern.match(node.name) for node in model.graph.node)
    indices = [int(match.group(1)) for match in found if match]
    if not indices:
        return []
    head = f"/model.{max(indices)}/"
    branch = re.compile(rf"^{re.escape(head)}(one2one_)?(cv\d|proto)")
    return [
        n.name
        for n in model.graph.node
        if n.name.startswith(head) and not branch.match(n.name)
    ]


def quantize(
    onnx_path: Path | str,
    calibration_images: Path | str | Iterable[Path | str],
    out: Path | str,
    *,
    preprocess: Preprocess,
    max_images: int = 200,
    per_channel: bool = True,
) -> Path:
    """Writes a static INT8 (QDQ) copy of an Ultralytics ONNX export.

    ONNX Runtime's recipe for CPUs: the model is first pre-processed
    (`quant_pre_process`: graph optimisation and ONNX shape inference), then
    `quantize_static` inserts QuantizeLinear/DequantizeLinear pairs with
    uint8 activations and int8 weights (per output channel when
    `per_channel`), the activation ranges calibrated (MinMax) on the given
    images. The head's box and score decoding stays in float
    (`head_decode_nodes`). Ultralytics' metadata (names, imgsz, stride, task,
    ...) is copied over, so the task's predictor opens the result like the
    original.

    Args:
        onnx_path: The FP32 `.onnx` from `visionops.engine.onnx.export_onnx`.
        calibration_images: A folder of images (searched recursively) or image
            paths, representative of what will be served (e.g. the validation
            split); at most `max_images` are used, spread evenly.
        out: The `.onnx` file to write.
        preprocess: Turns one BGR uint8 image into the model's input blob: the
            task's predictor's `preprocess` (`Task.predictor(onnx).preprocess`).
        max_images: The most calibration images to run.
        per_channel: Quantize weights per output channel (more accurate) rather
            than per tensor.

    Returns:
        The path of the quantized model (`out`).

    Raises:
        QuantizationError: If there are no calibration images or one cannot be
            decoded.
        FileNotFoundError: If `onnx_path` does not exist.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx_path, out = Path(onnx_path), Path(out)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model {onnx_path} does not exist.")
    files = calibration_files(calibration_images)
    if max_images < 1:
        raise QuantizationError(f"max_images must be at least 1, got {max_images}.")
    if len(files) > max_images:
        picks = np.linspace(0, len(files) - 1, max_images).round().astype(int)
        files = [files[i] for i in picks]
    if out.resolve() == onnx_path.resolve():
        raise QuantizationError(f"out must differ from the input model {onnx_path}.")

    source = onnx.load(str(onnx_path))
    input_name = source.graph.input[0].name
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="visionops-quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Symbolic shape inference is for transformers and gives up on the
        # dynamic height/width of these CNNs; ONNX shape inference and ORT's
        # graph optimisation still run.
        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
        exclude = head_decode_nodes(onnx.load(str(prepared)))
        reader = ImageCalibrationReader(files, input_name, preprocess)
        logger.info(
            "Quantizing %s to INT8 on %d calibration images (%d head nodes in float)",
            onnx_path.name,
            len(files),
            len(exclude),
        )
        quantize_static(
            str(prepared),
            str(out),
            calibration_data_reader=reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            reduce_range=False,  # VNNI CPUs need no 7-bit weights
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.MinMax,
        )
    quantized = onnx.load(str(out))
    metadata = {p.key: p.value for p in source.metadata_props}
    metadata[QUANTIZATION_KEY] = (
        f"static int8 QDQ, {'per-channel' if per_channel else 'per-tensor'} "
        f"weights, MinMax calibration on {len(files)} images"
    )
    del quantized.metadata_props[:]
    for key, value in metadata.items():
        quantized.metadata_props.add(key=key, value=value)
    onnx.save(quantized, str(out))
    return out
