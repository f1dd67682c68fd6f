"""ONNX Runtime detection agrees with Ultralytics' own predict."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from visionops.engine.onnx import export_onnx, letterbox, nms
from visionops.tasks.detect.onnx import Detections, OnnxDetector

IMGSZ = 128  # the size `tiny_weights` was trained at


@pytest.fixture(scope="module")
def onnx_path(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny_weights` exported with dynamic axes."""
    return export_onnx(tiny_weights, IMGSZ, tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def detector(onnx_path: Path) -> OnnxDetector:
    return OnnxDetector(onnx_path)


@pytest.fixture(scope="module")
def test_images(tiny_dataset) -> list[Path]:
    images = sorted((tiny_dataset.root / "images" / "test").iterdir())
    assert images, "the tiny dataset has no test images"
    return images


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (n, 4) and (m, 4) xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def test_export_writes_metadata_offline_and_leaves_weights_alone(
    onnx_path: Path, detector: OnnxDetector, tiny_weights: Path, outbound
) -> None:
    assert onnx_path.suffix == ".onnx" and onnx_path.is_file()
    assert not tiny_weights.with_suffix(".onnx").exists()
    assert detector.imgsz == (IMGSZ, IMGSZ)
    assert detector.names == {0: "board"}  # read back from the ONNX metadata
    assert detector.dynamic_batch and detector.rect and not detector.end2end
    assert outbound == []


def _assert_agrees(
    ref, ours: Detections, label: str, max_shift: float = np.inf
) -> None:
    """Same box count (within 10%), and the top 20 found with IoU > 0.9, same class,
    a confidence within 0.02 and corners within `max_shift` pixels."""
    assert abs(len(ours) - len(ref)) <= max(1, len(ref) // 10), label
    top = min(20, len(ref))
    if not top:
        return
    iou = _iou(ref.xyxy.numpy()[:top], ours.boxes)
    ref_scores = ref.conf.numpy()[:top]
    ref_classes = ref.cls.numpy().astype(np.int64)[:top]
    shift = np.abs(ref.xyxy.numpy()[:top, None] - ours.boxes[None]).max(-1)
    matched = sum(
        bool(
            (
                (iou[i] > 0.9)
                & (ours.class_ids == ref_classes[i])
                & (np.abs(ours.scores - ref_scores[i]) < 0.02)
                & (shift[i] < max_shift)
            ).any()
        )
        for i in range(top)
    )
    assert matched >= 0.9 * top, f"{label}: {matched}/{top} matched"


def test_matches_ultralytics_predict(
    tiny_weights: Path, detector: OnnxDetector, test_images: list[Path]
) -> None:
    from ultralytics import YOLO

    model = YOLO(tiny_weights)
    found = 0
    for path in test_images:
        image = cv2.imread(str(path))
        ref = model.predict(image, imgsz=IMGSZ, conf=0.01, iou=0.7, verbose=False)
        ours = detector.predict(image, conf=0.01, iou=0.7)
        _assert_agrees(ref[0].boxes, ours, path.name)
        found += len(ours)
    assert found > 0, "the weak model found nothing anywhere at conf=0.01"


@pytest.fixture(scope="module")
def lively_weights(
    tiny_dataset, test_images: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A random YOLO11n whose outputs depend on the image (unlike `tiny_weights`).

    Two training epochs leave a head that says the same thing for every image,
    which would let a broken resize or box mapping pass. Setting every
    BatchNorm's statistics from one batch of real images keeps activations
    alive through the random network, so boxes and scores vary per image.
    """
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolo11n.yaml")
    net = model.model
    batch = np.stack([letterbox(cv2.imread(str(p)), 160)[0] for p in test_images])
    x = torch.from_numpy(batch[..., ::-1].transpose(0, 3, 1, 2).copy()) / 255
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 1.0
    net.train()
    with torch.no_grad():
        net(x)
    net.eval()
    for branch in net.model[-1].cv3:
        branch[-1].bias.data.fill_(-3.0)  # a score spread around conf=0.25
    weights = tmp_path_factory.mktemp("lively") / "lively.pt"
    model.save(weights)
    return weights


@pytest.mark.parametrize("dynamic", [True, False])
def test_matches_ultralytics_on_image_dependent_model(
    lively_weights: Path, test_images: list[Path], tmp_path: Path, dynamic: bool
) -> None:
    from ultralytics import YOLO

    onnx_file = export_onnx(lively_weights, 160, tmp_path, dynamic=dynamic)
    detector = OnnxDetector(onnx_file)
    assert detector.rect is dynamic
    # PyTorch predict pads to a stride multiple like a dynamic graph; Ultralytics
    # runs a fixed-size graph at its full size, so that one is the reference.
    model = YOLO(lively_weights if dynamic else onnx_file, task="detect")
    found = 0
    for path in test_images:
        full = cv2.imread(str(path))
        # Crops whose padding is odd, the case where rounding could slip a pixel.
        for image in (full, full[:, 100:487], full[50:301]):
            ref = model.predict(image, imgsz=160, conf=0.25, iou=0.7, verbose=False)
            ours = detector.predict(image, conf=0.25, iou=0.7)
            # A half-pixel slip in the letterbox would move boxes by pixels.
            _assert_agrees(ref[0].boxes, ours, f"{path.name} {image.shape}", 0.5)
            found += len(ours)
    assert found > 10 * len(test_images)


@pytest.mark.parametrize(
    ("shape", "size"),
    [((37, 91, 3), 128), ((300, 170, 3), 128), ((120, 200, 3), (96, 160))],
)
def test_letterbox_matches_ultralytics(shape, size) -> None:
    from ultralytics.data.augment import LetterBox

    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    expected = LetterBox(new_shape=size, auto=False)(image=image.copy())
    padded, ratio, (pad_w, pad_h) = letterbox(image, size)

    assert padded.shape == expected.shape
    np.testing.assert_array_equal(padded, expected)
    height, width = (size, size) if isinstance(size, int) else size
    assert ratio == pytest.approx(min(height / shape[0], width / shape[1]))
    # The padding is where the grey border ends.
    assert (padded[: int(pad_h)] == 114).all() and (
        padded[:, : int(pad_w)] == 114
    ).all()


def test_nms_keeps_one_of_an_overlapping_pair_per_class() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.8, 0.9, 0.5], np.float32)

    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [1, 2])
    np.testing.assert_array_equal(
        nms(boxes, scores, 0.5, np.array([0, 1, 0])), [1, 0, 2]
    )
    # Below the overlap threshold both survive.
    np.testing.assert_array_equal(nms(boxes, scores, 0.95), [1, 0, 2])
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


@pytest.mark.parametrize("classes", [None, 3])
def test_nms_matrix_keeps_what_the_row_loop_keeps(
    classes: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import visionops.engine.onnx as inference

    rng = np.random.default_rng(7)
    corners = rng.uniform(0, 600, (1500, 2))
    boxes = np.hstack([corners, corners + rng.uniform(5, 120, (1500, 2))])
    scores = rng.uniform(0.25, 1, 1500).astype(np.float32)
    scores[:40] = scores[40]  # ties keep the input order in both
    ids = None if classes is None else rng.integers(0, classes, 1500)
    matrix = nms(boxes, scores, 0.5, ids)
    monkeypatch.setattr(inference, "NMS_MATRIX", 0)  # the row-by-row loop
    np.testing.assert_array_equal(matrix, nms(boxes, scores, 0.5, ids))
    assert 10 < len(matrix) < 1500


def test_kept_buffers_do_not_leak_between_images(
    onnx_path: Path, test_images: list[Path]
) -> None:
    """One detector, images of changing sizes and padding, equals fresh ones."""
    images = [cv2.imread(str(p)) for p in test_images[:2]]
    images += [cv2.resize(images[0], (200, 90)), cv2.resize(images[1], (90, 200))]
    reused = OnnxDetector(onnx_path)
    for image in images * 2:
        got = reused.predict(image, conf=0.01)
        want = OnnxDetector(onnx_path).predict(image, conf=0.01)
        np.testing.assert_array_equal(got.boxes, want.boxes)
        np.testing.assert_array_equal(got.scores, want.scores)
    timing: dict[str, float] = {}
    reused.predict(images[0], timing=timing)
    assert set(timing) == {"preprocess", "inference", "postprocess"}
    assert all(v >= 0 for v in timing.values()) and timing["inference"] > 0


def test_predict_batch_equals_predict(
    detector: OnnxDetector, test_images: list[Path]
) -> None:
    images = [cv2.imread(str(p)) for p in test_images[:4]]
    images.append(cv2.resize(images[0], (77, 203)))  # a different, odd shape
    batch = detector.predict_batch(images, conf=0.01)

    assert len(batch) == len(images)
    for image, got in zip(images, batch, strict=True):
        single = detector.predict(image, conf=0.01)
        np.testing.assert_allclose(got.boxes, single.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, single.scores, atol=1e-5)
        np.testing.assert_array_equal(got.class_ids, single.class_ids)
        height, width = image.shape[:2]
        assert (got.boxes[:, 0::2] <= width).all() and (
            got.boxes[:, 1::2] <= height
        ).all()
        assert (got.boxes >= 0).all()


def test_yolo26_end2end_export_decodes(tmp_path: Path) -> None:
    onnx_file = export_onnx(
        Path("yolo26n.yaml"), 96, tmp_path, dynamic=False, end2end=True
    )
    detector = OnnxDetector(onnx_file)
    output = detector.session.get_outputs()[0]
    # K = max_det (300), clamped to the anchors at 96 px: 12*12 + 6*6 + 3*3 = 189.
    assert detector.end2end and output.shape == [1, 189, 6]
    assert not detector.dynamic_batch

    image = np.full((50, 140, 3), 90, np.uint8)
    # Random weights score everything near zero, so conf=0 keeps every row.
    dets = detector.predict_batch([image, image], conf=0.0, max_det=40)
    assert [len(d) for d in dets] == [40, 40]
    assert dets[0].boxes.dtype == np.float32 and dets[0].class_ids.dtype == np.int64
    assert (dets[0].boxes[:, 2] <= 140).all() and (dets[0].boxes[:, 3] <= 50).all()
    assert (np.diff(dets[0].scores) <= 0).all()
    np.testing.assert_allclose(dets[0].boxes, dets[1].boxes)
    assert len(detector.predict(image, conf=0.99)) == 0


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (None, "None"),
        ("a.jpg", "numpy array"),
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((8, 8, 4), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
    ],
)
def test_bad_inputs_raise_value_error(detector: OnnxDetector, image, message) -> None:
    with pytest.raises(ValueError, match=message):
        detector.predict(image)


def test_bad_batch_names_the_image(detector: OnnxDetector) -> None:
    good = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="image 1"):
        detector.predict_batch([good, None])
    assert detector.predict_batch([]) == []


def test_records_and_counts() -> None:
    dets = Detections(
        boxes=np.array([[1, 2, 3, 4], [5, 6, 7, 8], [0, 0, 1, 1]], np.float32),
        scores=np.array([0.9, 0.8, 0.7], np.float32),
        class_ids=np.array([1, 0, 1], np.int64),
    )
    records = dets.to_records(["cat", "dog"])
    assert records[0] == {
        "class_id": 1,
        "class_name": "dog",
        "confidence": pytest.approx(0.9),
        "box": {"x1": 1.0, "y1": 2.0, "x2": 3.0, "y2": 4.0},
    }
    assert dets.counts({0: "cat", 1: "dog"}) == {"cat": 1, "dog": 2}
    assert Detections.empty().to_records(["cat"]) == []
