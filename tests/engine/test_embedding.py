"""The model's own embedding: its head's inputs pooled, FP32 and INT8 alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.conftest import SAMPLE
from visionops.core import images
from visionops.engine.embedding import Embedder, head_inputs
from visionops.engine.onnx import export_onnx
from visionops.tasks import get_task


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init YOLO11n export at 64 px (the embedding's shape is the point)."""
    return export_onnx("yolo11n.yaml", 64, tmp_path_factory.mktemp("embed-onnx"))


def _frames(count: int) -> list[np.ndarray]:
    return [images.read(p) for p in sorted(SAMPLE.rglob("*.jpg"))[:count]]


def test_the_embedding_pools_what_the_head_reads(detector: Path) -> None:
    # YOLO11n's Detect head reads P3, P4 and P5: 64 + 128 + 256 channels.
    assert len(head_inputs(onnx.load(str(detector)))) == 3
    predictor = get_task("detect").predictor(detector)
    embedder = Embedder(detector)
    frames = _frames(3)
    found = embedder.embed([predictor.preprocess(f) for f in frames])
    assert found.shape == (3, 448)
    assert np.isfinite(found).all()
    assert not np.allclose(found[0], found[1])  # images tell apart


def test_an_int8_export_embeds_alike(tiny_weights: Path, tmp_path: Path) -> None:
    from visionops.engine.quantize import quantize

    fp32 = export_onnx(tiny_weights, 128, tmp_path)
    predictor = get_task("detect").predictor(fp32)
    int8 = quantize(
        fp32,
        sorted(SAMPLE.rglob("*.jpg"))[:8],
        tmp_path / "int8.onnx",
        preprocess=predictor.preprocess,
    )
    # The QDQ graph feeds its head weights through DequantizeLinear too: only
    # the image's activations are cut at.
    assert len(head_inputs(onnx.load(str(int8)))) == 3
    blobs = [predictor.preprocess(frame) for frame in _frames(4)]
    exact = Embedder(fp32).embed(blobs)
    quantized = Embedder(int8).embed(blobs)
    assert quantized.shape == exact.shape
    for a, b in zip(exact, quantized, strict=True):
        assert np.corrcoef(a, b)[0, 1] > 0.98


def test_a_graph_without_yolo_layers_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    with pytest.raises(ValueError, match="not a YOLO export"):
        head_inputs(helper.make_model(graph))
