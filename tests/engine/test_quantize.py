"""Static INT8 quantization: the model opens like the original and finds the same."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from visionops.engine.onnx import export_onnx
from visionops.engine.quantize import QUANTIZATION_KEY, QuantizationError, quantize
from visionops.tasks.detect.onnx import OnnxDetector

IMGSZ = 128  # the size `tiny_weights` was trained at


@pytest.fixture(scope="module")
def fp32(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(tiny_weights, IMGSZ, tmp_path_factory.mktemp("fp32"))


@pytest.fixture(scope="module")
def int8(fp32: Path, tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    # Calibrated on the validation split, compared on the test split.
    preprocess = OnnxDetector(fp32).preprocess
    return quantize(
        fp32, tiny_dataset.root / "images" / "val", out, preprocess=preprocess
    )


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def test_int8_model_is_quantized_and_keeps_ultralytics_metadata(
    fp32: Path, int8: Path
) -> None:
    model = onnx.load(str(int8))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size  # int8 weights
    meta = {p.key: p.value for p in model.metadata_props}
    assert "calibration on" in meta[QUANTIZATION_KEY]

    original, quantized = OnnxDetector(fp32), OnnxDetector(int8)
    assert quantized.names == original.names == {0: "board"}
    assert quantized.imgsz == original.imgsz == (IMGSZ, IMGSZ)
    assert quantized.stride == original.stride
    assert quantized.rect and quantized.dynamic_batch and not quantized.end2end


def test_int8_boxes_are_close_to_fp32(fp32: Path, int8: Path, tiny_dataset) -> None:
    # Two epochs leave weak scores (about 0.01): compared at a low bar. Quantizing
    # the head's decoding (one 8-bit scale for pixels and scores) loses them all.
    original, quantized = OnnxDetector(fp32), OnnxDetector(int8)
    images = sorted((tiny_dataset.root / "images" / "test").iterdir())
    assert images
    compared = matched = 0
    for path in images:
        image = cv2.imread(str(path))
        ref = original.predict(image, conf=0.005)
        ours = quantized.predict(image, conf=0.004)
        top = min(20, len(ref))
        if not top:
            continue
        iou = _iou(ref.boxes[:top], ours.boxes)
        for i in range(top):
            close = (
                (iou[i] > 0.8)
                & (ours.class_ids == ref.class_ids[i])
                & (np.abs(ours.scores - ref.scores[i]) < 0.1 * ref.scores[i])
            )
            matched += bool(close.any())
        compared += top
    assert compared >= len(images), "the FP32 model found too little to compare"
    assert matched >= 0.8 * compared, f"{matched}/{compared} FP32 boxes kept"


def test_no_calibration_images_is_a_clear_error(fp32: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    preprocess = OnnxDetector(fp32).preprocess
    out = tmp_path / "out.onnx"
    with pytest.raises(QuantizationError, match="No calibration images"):
        quantize(fp32, empty, out, preprocess=preprocess)
    with pytest.raises(QuantizationError, match="No calibration images"):
        quantize(fp32, [], out, preprocess=preprocess)
    with pytest.raises(QuantizationError, match="not found: .*missing.jpg"):
        quantize(fp32, [tmp_path / "missing.jpg"], out, preprocess=preprocess)
    assert not (tmp_path / "out.onnx").exists()


def test_undecodable_calibration_image_is_named(fp32: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(QuantizationError, match="broken.jpg cannot be decoded"):
        quantize(
            fp32,
            [broken],
            tmp_path / "out.onnx",
            preprocess=OnnxDetector(fp32).preprocess,
        )


def test_calibration_sees_what_the_predictors_feed(fp32: Path, tiny_dataset) -> None:
    from visionops.engine.onnx import letterbox

    detector = OnnxDetector(fp32)
    path = sorted((tiny_dataset.root / "images" / "val").iterdir())[0]
    image = cv2.imread(str(path))
    blob = detector.preprocess(image)
    padded = letterbox(image, detector.imgsz, auto=True, stride=detector.stride)[0]
    expected = padded[None, :, :, ::-1].transpose(0, 3, 1, 2) / np.float32(255)
    assert blob.shape == expected.shape and blob.dtype == np.float32
    np.testing.assert_allclose(blob, expected, atol=1e-6)
    # Its own copy: the detector's kept buffer is reused by the next call.
    detector.preprocess(np.zeros_like(image))
    np.testing.assert_allclose(blob, expected, atol=1e-6)
