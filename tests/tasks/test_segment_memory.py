"""Segmentation keeps each mask at its box's size, not the whole frame."""

from __future__ import annotations

import tracemalloc

import numpy as np

from visionops.tasks.segment.onnx import Instances, _native_masks


def test_many_instances_on_a_large_image_stay_small() -> None:
    height, width, count = 4000, 5000, 200  # 20 Mpx; full frames: 4 GB of masks
    rng = np.random.default_rng(0)
    protos = rng.standard_normal((32, 160, 160)).astype(np.float32)
    coeffs = rng.standard_normal((count, 32)).astype(np.float32)
    x1 = rng.uniform(0, width - 200, count)
    y1 = rng.uniform(0, height - 200, count)
    boxes = np.stack([x1, y1, x1 + 150.5, y1 + 120.25], axis=1).astype(np.float32)

    tracemalloc.start()
    crops, windows = _native_masks(protos, coeffs, boxes, (height, width))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 400 * 2**20
    assert len(crops) == count
    for crop, (x0, y0, x1_, y1_), box in zip(crops, windows, boxes, strict=True):
        assert crop.shape == (y1_ - y0, x1_ - x0)
        assert crop.shape[0] <= 121 and crop.shape[1] <= 151
        # The window is the box's pixels: x1 <= col < x2.
        assert x0 == np.ceil(box[0]) and x1_ == np.ceil(box[2])


def test_class_map_and_full_masks_agree_with_the_windows() -> None:
    masks = np.zeros((2, 50, 60), bool)
    masks[0, 10:30, 5:25] = True
    masks[1, 20:40, 15:45] = True  # overlaps instance 0 in rows 20-29
    instances = Instances.from_masks(
        np.array([[5, 10, 25, 30], [15, 20, 45, 40]], np.float32),
        np.array([0.9, 0.5], np.float32),
        np.array([3, 7], np.int64),
        masks,
        [[], []],
    )
    assert [c.shape for c in instances.crops] == [(20, 20), (20, 30)]
    np.testing.assert_array_equal(instances.masks, masks)
    class_map = instances.class_map()
    assert class_map[25, 20] == 3  # the more confident instance wins the overlap
    assert class_map[35, 40] == 7 and class_map[0, 0] < 0
    assert instances.class_pixels({3: "a", 7: "b"}) == {"a": 400, "b": 600 - 100}
