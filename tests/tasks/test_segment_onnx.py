"""ONNX Runtime segmentation agrees with Ultralytics' own predict."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import SHARED_DATASETS
from visionops.data.masks import fill_polygons
from visionops.engine.onnx import export_onnx
from visionops.tasks.segment.onnx import Instances, OnnxSegmenter

SHOES = SHARED_DATASETS / "shoe-soles-seg"
# `seg_weights` exported at 64 px. At its training size (96) the one-epoch model
# answers only whole-image boxes of one tied score, of which Ultralytics keeps 7
# and OnnxSegmenter 8 on full frames (seen 2026-12; not yet explained).
IMGSZ = 64
CONF = 0.001
LIVELY_IMGSZ = 96


@pytest.fixture(scope="module")
def shoes_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 valid images of shoe-soles-seg, in images/val/."""
    if not SHOES.is_dir():
        pytest.skip(f"{SHOES} is not present beside the checkout")
    root = tmp_path_factory.mktemp("shoes")
    (root / "images" / "val").mkdir(parents=True)
    for image in sorted((SHOES / "valid" / "images").iterdir())[:4]:
        shutil.copy2(image, root / "images" / "val" / image.name)
    return root


@pytest.fixture(scope="module")
def segmenter(
    seg_weights: Path, tmp_path_factory: pytest.TempPathFactory
) -> OnnxSegmenter:
    return OnnxSegmenter(
        export_onnx(seg_weights, IMGSZ, tmp_path_factory.mktemp("seg-onnx"))
    )


def _lively(arch: str, images: list[Path], weights: Path) -> Path:
    """Saves a random segmentation model whose boxes and masks depend on the image.

    A model trained for one epoch puts its few boxes on the whole
    image, whatever the image, and a random one has empty masks; either would
    let a broken box or mask mapping pass. BatchNorm statistics set from real
    images keep activations alive through the random network (as
    `lively_weights` in tests/engine/test_onnx.py does).
    """
    import torch
    from ultralytics import YOLO

    from visionops.engine.onnx import letterbox

    torch.manual_seed(0)
    model = YOLO(arch)
    net = model.model
    batch = np.stack([letterbox(cv2.imread(str(p)), LIVELY_IMGSZ)[0] for p in images])
    x = torch.from_numpy(batch[..., ::-1].transpose(0, 3, 1, 2).copy()) / 255
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 1.0
    net.train()
    with torch.no_grad():
        net(x)
    net.eval()
    head = net.model[-1]
    for branch in [*head.cv3, *getattr(head, "one2one_cv3", [])]:
        # Damped class logits: scores spread around conf=0.25 instead of ties at
        # 1.0, whose order NMS may break either way.
        branch[-1].weight.data *= 0.02
        branch[-1].bias.data.fill_(-1.0)
    model.save(weights)
    return weights


@pytest.fixture(scope="module")
def lively_seg_weights(
    shoes_subset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A random YOLO11n-seg whose boxes and masks depend on the image."""
    images = sorted((shoes_subset / "images" / "val").iterdir())
    out = tmp_path_factory.mktemp("lively-seg") / "lively-seg.pt"
    return _lively("yolo11n-seg.yaml", images, out)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _assert_matches(ref, ours: Instances, label: str, box_tol: float = 1e-3) -> int:
    """Each reference instance has an unused counterpart with the same box (within
    `box_tol` px), class and confidence (1e-4), whose mask has an IoU >= 0.95 with
    its own; among several such counterparts (a weak model repeats boxes), the
    best mask. Returns how many were matched."""
    assert len(ours) == len(ref), f"{label}: {len(ours)} instances, {len(ref)} in ref"
    assert ours.masks.shape == (len(ours), *ref.orig_shape)
    if not len(ref):
        return 0
    ref_boxes = ref.boxes.xyxy.numpy()
    ref_scores = ref.boxes.conf.numpy()
    ref_classes = ref.boxes.cls.numpy().astype(np.int64)
    ref_masks = ref.masks.data.numpy().astype(bool)
    used: set[int] = set()
    for i in range(len(ref)):
        same = (
            (np.abs(ours.boxes - ref_boxes[i]).max(axis=1) < box_tol)
            & (ours.class_ids == ref_classes[i])
            & (np.abs(ours.scores - ref_scores[i]) < 1e-4)
        )
        candidates = [j for j in np.flatnonzero(same).tolist() if j not in used]
        assert candidates, f"{label}: no box like {ref_boxes[i]} ({ref_scores[i]:.4f})"
        ious = [_mask_iou(ours.masks[j], ref_masks[i]) for j in candidates]
        best = int(np.argmax(ious))
        assert ious[best] >= 0.95, f"{label}: instance {i} mask IoU {ious[best]:.3f}"
        used.add(candidates[best])
    return len(ref)


def test_masks_match_ultralytics_predict(
    seg_weights: Path, segmenter: OnnxSegmenter, shoes_subset: Path
) -> None:
    from ultralytics import YOLO

    model = YOLO(seg_weights)
    assert segmenter.names == {0: "shoes"} and segmenter.rect
    matched = 0
    for path in sorted((shoes_subset / "images" / "val").iterdir()):
        full = cv2.imread(str(path))
        # A crop with an odd letterbox padding exercises the prototype upsampling.
        for image in (full, full[50:301]):
            ref = model.predict(
                image, imgsz=IMGSZ, conf=CONF, retina_masks=True, verbose=False
            )[0]
            ours = segmenter.predict(image, conf=CONF)
            matched += _assert_matches(ref, ours, f"{path.name} {image.shape}")
    assert matched > 0, f"the 1-epoch model found nothing at conf={CONF}"


def test_masks_match_ultralytics_on_image_dependent_model(
    lively_seg_weights: Path, shoes_subset: Path, tmp_path: Path
) -> None:
    from ultralytics import YOLO

    segmenter = OnnxSegmenter(export_onnx(lively_seg_weights, LIVELY_IMGSZ, tmp_path))
    model = YOLO(lively_seg_weights)
    matched, boxes = 0, set()
    for path in sorted((shoes_subset / "images" / "val").iterdir())[:2]:
        full = cv2.imread(str(path))
        for image in (full, full[50:301], full[:, 100:487]):
            ref = model.predict(
                image, imgsz=LIVELY_IMGSZ, conf=0.25, retina_masks=True, verbose=False
            )[0]
            ours = segmenter.predict(image, conf=0.25)
            # The random network's large activations leave float32 noise of a
            # few hundredths of a pixel between ONNX Runtime and torch on some
            # boxes (a letterbox slip would move them by pixels).
            label = f"{path.name} {image.shape}"
            matched += _assert_matches(ref, ours, label, box_tol=0.05)
            boxes.update(tuple(b) for b in ours.boxes.round().tolist())
    # Boxes inside the image, not all clipped to it: the mapping is exercised.
    assert matched > 20 and len(boxes) > 10


def test_polygons_outline_the_masks(segmenter: OnnxSegmenter, shoes_subset) -> None:
    path = sorted((shoes_subset / "images" / "val").iterdir())[0]
    image = cv2.imread(str(path))
    ours = segmenter.predict(image, conf=CONF, max_det=10)
    assert len(ours) > 0
    height, width = image.shape[:2]
    for mask, outlines in zip(ours.masks, ours.polygons, strict=True):
        painted = np.zeros(mask.shape, np.int32)
        fill_polygons(painted, outlines, 1)
        # The outlines paint the mask back, up to holes they cover.
        assert (painted[mask] == 1).all()
        assert _mask_iou(painted == 1, mask) >= 0.95
        for outline in outlines:
            assert (outline[:, 0] >= 0).all() and (outline[:, 0] <= width).all()
            assert (outline[:, 1] >= 0).all() and (outline[:, 1] <= height).all()
    records = ours.to_records(segmenter.names)
    assert records[0]["class_name"] == "shoes"
    assert len(records[0]["polygon"]) >= 3 and len(records[0]["polygon"][0]) == 2
    pixels = ours.class_pixels(segmenter.names)
    assert pixels["shoes"] == int((ours.class_map() == 0).sum()) > 0


def test_batch_equals_single_and_empty(segmenter: OnnxSegmenter) -> None:
    images = [np.full((90, 130, 3), 100, np.uint8), np.zeros((64, 64, 3), np.uint8)]
    timing: dict[str, float] = {}
    batch = segmenter.predict_batch(images, conf=CONF, timing=timing)
    assert set(timing) == {"preprocess", "inference", "postprocess"}
    assert all(v >= 0 for v in timing.values()) and timing["inference"] > 0
    for image, got in zip(images, batch, strict=True):
        single = segmenter.predict(image, conf=CONF)
        np.testing.assert_allclose(got.boxes, single.boxes, atol=1e-3)
        np.testing.assert_array_equal(got.masks, single.masks)
    none = segmenter.predict(images[0], conf=0.999)
    assert isinstance(none, Instances) and len(none) == 0
    assert none.masks.shape == (0, 90, 130) and none.to_records({0: "x"}) == []


def test_detection_model_is_refused(tmp_path: Path) -> None:
    onnx_file = export_onnx(Path("yolo11n.yaml"), 64, tmp_path)
    with pytest.raises(ValueError, match="prototype"):
        OnnxSegmenter(onnx_file)


def test_yolo26_end2end_export_matches_ultralytics(
    shoes_subset: Path, tmp_path: Path
) -> None:
    from ultralytics import YOLO

    images = sorted((shoes_subset / "images" / "val").iterdir())
    weights = _lively("yolo26n-seg.yaml", images, tmp_path / "lively26.pt")
    onnx_file = export_onnx(
        weights, LIVELY_IMGSZ, tmp_path, dynamic=False, end2end=True
    )
    segmenter = OnnxSegmenter(onnx_file)
    assert segmenter.end2end and not segmenter.rect
    # Ultralytics running the very same NMS-free graph is the reference.
    model = YOLO(onnx_file, task="segment")
    image = cv2.imread(str(images[0]))
    matched = 0
    for crop in (image, image[50:301], image[:, 100:487]):
        ref = model.predict(
            crop, imgsz=LIVELY_IMGSZ, conf=0.25, retina_masks=True, verbose=False
        )
        ours = segmenter.predict(crop, conf=0.25)
        matched += _assert_matches(ref[0], ours, f"yolo26 {crop.shape}")
    assert matched > 20
