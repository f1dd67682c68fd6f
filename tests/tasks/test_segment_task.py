"""The segment task's names, metric mapping and evaluation pieces, without training."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from visionops.data.masks import BACKGROUND
from visionops.engine.report import EvalReport
from visionops.tasks import TaskError, available_tasks, get_task
from visionops.tasks.segment.evaluate import (
    IOU_PLOT,
    PIXEL_CONFUSION_PLOT,
    evaluation_html,
    per_class_rows,
    result_class_map,
)
from visionops.tasks.segment.metrics import plot_class_iou, plot_confusion
from visionops.tasks.segment.onnx import Instances


def test_segment_is_a_registered_task_with_its_model_names() -> None:
    task = get_task("segment")
    assert "segment" in available_tasks()
    assert task.ultralytics_task == "segment" and task.default_model == "yolo11n-seg"
    assert task.default_model_name == "image-segmenter"
    assert task.model_name("yolo11s") == "yolo11s-seg"
    assert task.model_name("yolo26n") == "yolo26n-seg"
    assert task.model_name("yolo11m-seg") == "yolo11m-seg"
    with pytest.raises(TaskError, match="yolo11n-seg"):
        task.model_name("yolo11n-cls")


def test_val_metrics_map_mask_and_box_keys() -> None:
    task = get_task("segment")
    results = {
        "metrics/mAP50-95(M)": 0.4,
        "metrics/mAP50(M)": 0.7,
        "metrics/mAP50-95(B)": 0.5,
        "metrics/mAP50(B)": 0.8,
        "metrics/precision(M)": 0.6,
        "fitness": 0.9,
    }
    val = task.val_metrics(results)
    assert val["mask_map50_95"] == 0.4 and val["mask_map50"] == 0.7
    assert val["box_map50_95"] == 0.5 and val["box_map50"] == 0.8
    assert val["mask_precision"] == 0.6 and val["mask_recall"] == 0.0
    assert set(val) == set(task.val_metrics_names)
    assert task.default_metric in task.val_metrics_names


def test_test_metric_names_hold_iou_per_class() -> None:
    names = get_task("segment").test_metric_names(["road", "traffic sign"])
    assert {"miou", "pixel_accuracy", "mask_map50_95", "box_map50"} <= set(names)
    assert "iou_road" in names and "iou_traffic_sign" in names  # MLflow-safe key


def _result(masks: list[np.ndarray], classes: list[int], scores: list[float]):
    """A stand-in for an Ultralytics segment `Results` (retina masks)."""
    shape = masks[0].shape if masks else (3, 4)
    return SimpleNamespace(
        orig_shape=shape,
        masks=SimpleNamespace(data=torch.tensor(np.stack(masks), dtype=torch.float32))
        if masks
        else None,
        boxes=SimpleNamespace(
            cls=torch.tensor(classes, dtype=torch.float32),
            conf=torch.tensor(scores, dtype=torch.float32),
        ),
    )


def test_result_class_map_most_confident_instance_wins() -> None:
    left = np.zeros((3, 4), bool)
    left[:, :3] = True
    right = np.zeros((3, 4), bool)
    right[:, 2:] = True
    class_map = result_class_map(_result([left, right], [0, 1], [0.4, 0.9]))
    expected = np.array([[0, 0, 1, 1]] * 3, np.int32)
    assert np.array_equal(class_map, expected)
    nothing = result_class_map(_result([], [], []))
    assert nothing.shape == (3, 4) and (nothing == BACKGROUND).all()


def test_per_class_rows_say_na_where_undefined() -> None:
    rows = per_class_rows(
        ["road", "car"],
        {"iou_road": 0.5, "iou_car": float("nan")},
        {"road": {"mask_ap50": 0.7, "mask_ap50_95": 0.3, "box_ap50_95": 0.4}},
    )
    assert rows[0] == {
        "class": "road",
        "iou": 0.5,
        "mask_ap50": 0.7,
        "mask_ap50_95": 0.3,
        "box_ap50_95": 0.4,
    }
    assert rows[1]["iou"] == rows[1]["mask_ap50"] == "n/a"


def test_evaluation_html_shows_iou_chart_and_pixel_confusion(tmp_path: Path) -> None:
    metrics = {"iou_road": 0.5, "iou_car": 0.25, "miou": 0.375}
    plot_class_iou(metrics, ["road", "car"], tmp_path / IOU_PLOT)
    plot_confusion(
        np.eye(3, dtype=np.int64), ["road", "car"], tmp_path / PIXEL_CONFUSION_PLOT
    )
    report = EvalReport(
        task="segment",
        split="test",
        dataset_hash="0" * 64,
        weights_sha256="1" * 64,
        imgsz=64,
        images=2,
        metrics={**metrics, "pixel_accuracy": 0.9, "mask_map50_95": 0.1},
        per_class=per_class_rows(["road", "car"], metrics, {}),
        class_names=["road", "car"],
        confusion_matrix=np.eye(3).tolist(),
    )
    task = get_task("segment")
    html = task.evaluation_html(report, tmp_path)
    assert html == evaluation_html(report, tmp_path, task.metric_label)
    assert "IoU per class" in html and "Pixel confusion matrix" in html
    assert html.count("data:image/png;base64,") == 2
    # Each metric under its display name.
    assert "<th>mIoU</th><td>0.3750</td>" in html
    assert "<th>IoU road</th><td>0.5000</td>" in html
    assert "<th>mask mAP50-95</th><td>0.1000</td>" in html
    # A report with only undefined values round-trips (NaN would not).
    assert EvalReport.model_validate_json(report.model_dump_json()) == report


def _instances() -> Instances:
    mask = np.zeros((100, 120), bool)
    mask[52:96, 63:109] = True
    return Instances.from_masks(
        np.array([[63, 52, 109, 96]], np.float32),
        np.array([0.8], np.float32),
        np.array([1], np.int64),
        mask[None],
        [
            [
                np.array(
                    [[63.5, 52.5], [108.5, 52.5], [108.5, 95.5], [63.5, 95.5]],
                    np.float32,
                )
            ]
        ],
    )


def test_records_and_render_of_instances() -> None:
    task = get_task("segment")
    names = {0: "road", 1: "car"}
    records = _instances().to_records(names)
    assert len(records) == 1
    record = records[0]
    assert record["class_id"] == 1 and record["class_name"] == "car"
    assert record["confidence"] == pytest.approx(0.8)
    assert record["polygon"][0] == [63.5, 52.5] and len(record["polygon"]) == 4
    frame = np.full((100, 120, 3), 200, np.uint8)
    overlay = task.render(frame, _instances(), names)
    assert overlay.shape == frame.shape and (frame == 200).all()  # a copy
    assert (overlay[99, 119] == 200).all()  # outside the mask and the legend
    assert not (overlay[80, 100] == 200).all()  # inside the mask: tinted
