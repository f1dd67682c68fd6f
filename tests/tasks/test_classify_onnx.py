"""ONNX Runtime classification agrees with Ultralytics' own classify predict."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import CLS_IMGSZ as IMGSZ
from tests.conftest import CLS_NAMES as NAMES
from visionops.engine.onnx import export_onnx
from visionops.tasks.classify.onnx import (
    Classification,
    OnnxClassifier,
    classify_preprocess,
)


@pytest.fixture(scope="module")
def onnx_path(cls_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(cls_weights, IMGSZ, tmp_path_factory.mktemp("cls-onnx"))


@pytest.fixture(scope="module")
def classifier(onnx_path: Path) -> OnnxClassifier:
    return OnnxClassifier(onnx_path)


@pytest.fixture(scope="module")
def frames(classify_folder: Path) -> list[np.ndarray]:
    """Test X-rays as loaded, cropped to odd aspect ratios, shrunk, enlarged and
    tinted (X-rays are grey: only colour shows the channel order)."""
    a, b, c, d = (
        cv2.imread(str(p)) for p in sorted((classify_folder / "test").rglob("*.jpeg"))
    )
    return [
        a,  # 224 x 224, as stored
        b[10:190, :],  # landscape 180 x 224
        c[:, 37:140],  # portrait 224 x 103 (odd crop offsets)
        cv2.resize(d, (57, 131)),  # small, odd sides
        cv2.resize(a[:, :101], (21, 27)),  # smaller than imgsz: resized up
        cv2.resize(b, (641, 385), interpolation=cv2.INTER_CUBIC),  # large
        (c[20:200, 5:] * [1.0, 0.9, 0.8]).astype(np.uint8),  # tinted, 180 x 219
    ]


def test_reads_names_and_size_from_the_export(
    classifier: OnnxClassifier, cls_weights: Path, onnx_path: Path, outbound
) -> None:
    assert classifier.names == NAMES
    assert classifier.imgsz == (IMGSZ, IMGSZ)
    assert classifier.dynamic_batch
    assert onnx_path.is_file() and not cls_weights.with_suffix(".onnx").exists()
    assert outbound == []


def test_probabilities_equal_ultralytics_predict(
    classifier: OnnxClassifier, cls_weights: Path, frames: list[np.ndarray]
) -> None:
    from ultralytics import YOLO

    model = YOLO(str(cls_weights))
    expected = np.stack(
        [model.predict(f, verbose=False)[0].probs.data.numpy() for f in frames]
    )
    ours = np.stack([classifier.predict(f).probabilities for f in frames])
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
    timing: dict[str, float] = {}
    found = classifier.predict_batch(frames, timing=timing)
    batched = np.stack([c.probabilities for c in found])
    np.testing.assert_allclose(batched, ours, atol=1e-6, rtol=0)
    assert set(timing) == {"preprocess", "inference", "postprocess"}
    assert all(v >= 0 for v in timing.values()) and timing["inference"] > 0
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-5)
    # Swapping the channels of the colour frame changes the answer: RGB matters.
    swapped = classifier.predict(np.ascontiguousarray(frames[-1][..., ::-1]))
    assert np.abs(swapped.probabilities - ours[-1]).max() > 1e-3
    # The model does tell the images apart, so a preprocessing slip would show.
    assert np.ptp(expected[:, 0]) > 0.05


def test_preprocess_matches_ultralytics_transforms(frames: list[np.ndarray]) -> None:
    import torch
    from PIL import Image
    from ultralytics.data.augment import classify_transforms

    transforms = classify_transforms((IMGSZ, IMGSZ))
    for frame in frames:
        rgb = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        expected = transforms(rgb)
        assert isinstance(expected, torch.Tensor)
        np.testing.assert_array_equal(classify_preprocess(frame, IMGSZ), expected)
    # A (height, width) size resizes to exactly that, as `classify_transforms` does.
    frame = frames[1]
    rgb = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    np.testing.assert_array_equal(
        classify_preprocess(frame, (48, 80)), classify_transforms((48, 80))(rgb)
    )


def test_records_are_sorted_top_k() -> None:
    result = Classification(np.array([0.1, 0.6, 0.1, 0.2], np.float32))
    ids, probabilities = result.top(3)
    assert ids.tolist() == [1, 3, 0]  # the tie of 0 and 2 keeps the lower id first
    np.testing.assert_allclose(probabilities, [0.6, 0.2, 0.1])
    assert result.class_id == 1 and result.probability == pytest.approx(0.6)
    assert result.to_records(["a", "b", "c", "d"], k=2) == [
        {"class_id": 1, "class_name": "b", "probability": pytest.approx(0.6)},
        {"class_id": 3, "class_name": "d", "probability": pytest.approx(0.2)},
    ]
    assert len(result.to_records({0: "a"}, k=10)) == 4  # all of them; unknown ids
    assert result.to_records({0: "a"}, k=10)[0]["class_name"] == "1"  # by number


def test_predict_records(classifier: OnnxClassifier, frames: list[np.ndarray]) -> None:
    records = classifier.predict(frames[0]).to_records(classifier.names, k=5)
    assert [r["class_name"] for r in records] in (
        ["NORMAL", "PNEUMONIA"],
        ["PNEUMONIA", "NORMAL"],
    )
    assert records[0]["probability"] >= records[1]["probability"]
    assert sum(r["probability"] for r in records) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((32, 32), np.uint8), "convert grey or BGRA"),
        (np.zeros((32, 32, 4), np.uint8), "convert grey or BGRA"),
        (np.zeros((32, 32, 3), np.float32), "dtype float32"),
        (np.zeros((0, 32, 3), np.uint8), "empty"),
        (None, "is None"),
        ("x.jpg", "is a str"),
    ],
)
def test_bad_images_are_refused(classifier: OnnxClassifier, image, message) -> None:
    with pytest.raises(ValueError, match=message):
        classifier.predict(image)
    with pytest.raises(ValueError, match=f"image 1 .*{message}"):
        classifier.predict_batch([np.zeros((8, 8, 3), np.uint8), image])


def test_grey_and_bgra_converted_with_cv2_are_classified(
    classifier: OnnxClassifier, frames: list[np.ndarray]
) -> None:
    grey = cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(frames[0], cv2.COLOR_BGR2BGRA)
    for converted in (
        cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR),
        cv2.cvtColor(bgra, cv2.COLOR_BGRA2BGR),
    ):
        assert len(classifier.predict(converted)) == 2
    assert classifier.predict_batch([]) == []
    with pytest.raises(ValueError, match="list of images"):
        classifier.predict_batch(frames[0])


def test_a_detector_export_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    # The shape of a detector's graph: (batch, 4 + nc, anchors) out.
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["images", "shape"], ["output0"])],
        "detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 16])],
        [helper.make_tensor("shape", TensorProto.INT64, [3], [1, 3, 16])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    helper.set_model_props(model, {"names": "{0: 'board'}", "task": "detect"})
    path = tmp_path / "detector.onnx"
    onnx.save(model, path)
    with pytest.raises(ValueError, match="not a classifier"):
        OnnxClassifier(path)


def test_a_fixed_shape_export_gives_the_same_answers(
    cls_weights: Path,
    classifier: OnnxClassifier,
    frames: list[np.ndarray],
    tmp_path: Path,
) -> None:
    fixed = OnnxClassifier(export_onnx(cls_weights, IMGSZ, tmp_path, dynamic=False))
    assert not fixed.dynamic_batch and fixed.imgsz == (IMGSZ, IMGSZ)
    ours = [c.probabilities for c in fixed.predict_batch(frames[:3])]
    expected = [c.probabilities for c in classifier.predict_batch(frames[:3])]
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)
