"""One display name per metric key, from the task (the page, reports, status)."""

from __future__ import annotations

import pytest

from visionops.tasks import get_task


@pytest.mark.parametrize(
    ("task", "key", "label"),
    [
        ("detect", "map50_95", "mAP50-95"),
        ("detect", "f1", "F1"),
        ("classify", "top1", "top-1"),
        ("classify", "macro_f1", "macro-F1"),
        ("classify", "recall_PNEUMONIA", "recall PNEUMONIA"),
        ("classify", "f1_no_finding", "F1 no_finding"),
        ("classify", "roc_auc", "ROC-AUC"),
        ("segment", "box_map50_95", "box mAP50-95"),
        ("segment", "mask_map50", "mask mAP50"),
        ("segment", "iou_general_trashbag", "IoU general_trashbag"),
        ("segment", "miou", "mIoU"),
        ("segment", "pixel_accuracy", "pixel accuracy"),
        ("detect", "not_a_metric", "not_a_metric"),  # unknown keys show as they are
    ],
)
def test_metric_label(task: str, key: str, label: str) -> None:
    assert get_task(task).metric_label(key) == label


def test_status_shows_the_champions_metrics_by_their_names() -> None:
    from visionops.app.status import format_status

    champion = {
        "name": "image-segmenter",
        "version": "2",
        "task": "segment",
        "mlflow_model_uri": "models:/image-segmenter/2",
        "test_metrics": {"mask_map50_95": 0.5, "iou_general_trashbag": 0.25},
        "onnx": "model.onnx",
        "precision": "fp32",
        "onnx_latency_ms": 12.0,
    }
    status = {
        "stack": {"name": "local", "tracking_uri": "", "components": {}},
        "dataset": None,
        "champion": champion,
        "reports": {},
    }
    lines = format_status(status).splitlines()
    assert "  test: IoU general_trashbag 0.2500, mask mAP50-95 0.5000" in lines
