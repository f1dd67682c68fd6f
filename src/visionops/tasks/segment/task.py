"""The segmentation task: Ultralytics `segment`, mask mAP and IoU, `OnnxSegmenter`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionops.data.manifest import BOXES, MASKS, POLYGONS
from visionops.engine.task import Task

if TYPE_CHECKING:
    import numpy as np

    from visionops.engine.report import EvalReport

# Ultralytics' validation keys, `(M)` for masks and `(B)` for boxes.
VAL_KEYS = {
    "mask_map50_95": "metrics/mAP50-95(M)",
    "mask_map50": "metrics/mAP50(M)",
    "mask_precision": "metrics/precision(M)",
    "mask_recall": "metrics/recall(M)",
    "box_map50_95": "metrics/mAP50-95(B)",
    "box_map50": "metrics/mAP50(B)",
    "box_precision": "metrics/precision(B)",
    "box_recall": "metrics/recall(B)",
}
# What the test evaluation measures whatever the classes (plus `iou_<class>`).
INSTANCE_METRICS = ("mask_map50_95", "mask_map50", "box_map50_95", "box_map50")
SEMANTIC_METRICS = ("miou", "pixel_accuracy")


class SegmentTask(Task):
    """Object masks, judged by mask mAP50-95 and, per pixel, by IoU per class."""

    name = "segment"
    ultralytics_task = "segment"
    model_suffix = "-seg"
    default_model_name = "image-segmenter"
    description = "YOLO instance segmenter trained on the latest ingested dataset."
    val_metrics_names = tuple(VAL_KEYS)
    default_metric = "mask_map50_95"
    headline_metrics = (*INSTANCE_METRICS, *SEMANTIC_METRICS)
    metric_labels = {
        "mask": "mask",
        "box": "box",
        "miou": "mIoU",
        "pixel_accuracy": "pixel accuracy",
        "iou": "IoU",
    }
    pipelines = frozenset({"training", "deployment", "batch"})
    # A mask PNG per image and one CSV row per instance.
    batch_outputs = "visionops.tasks.segment.batch:SegmentBatchOutput"
    # Video: a row per box with its track id (Ultralytics' trackers).
    video_outputs = "visionops.tasks.segment.video:SegmentVideoOutput"
    # COCO is asked for polygons; YOLO box-or-polygon labels are taken as they are
    # (validation quarantines box lines).
    label_kinds = (POLYGONS, MASKS, BOXES)
    # Boxes as `OnnxDetector`, masks from the prototypes; a pyfunc row per
    # instance, with its polygon.
    predictor_class = "visionops.tasks.segment.onnx:OnnxSegmenter"
    pyfunc_class = "visionops.tasks.segment.pyfunc:SegmenterOnnxModel"
    # Ultralytics validation (box and mask mAP) and, from the `.pt`'s predicted
    # masks, IoU per class against the layout's ground truth (the IoU chart and
    # pixel confusion matrix land in `out_dir`); mask and box mAP resampled from
    # the kept matches, IoU from per-image pixel counts.
    measurer = "visionops.tasks.segment.evaluate:measure"
    resampler = "visionops.tasks.segment.resample:segment_metric"
    # Polygon lines, or a mask image outlined.
    label_checker = "visionops.tasks.segment.labels:check_labels"
    # `/segment`: instances and pixels per class.
    serving_spec = "visionops.tasks.segment.serving:SERVING"
    answerer = "visionops.tasks.segment.serving:answer"
    # Labelling batches: the predictions as pre-labels in the dataset's format.
    review_exporter = "visionops.tasks.segment.review:SegmentReview"
    # The prediction record's figures: objects and confidences per class (as
    # detection: instances are boxes with a mask).
    summarizer = "visionops.tasks.detect.summary:summary"
    featurizer = "visionops.tasks.segment.features:prediction_features"

    def val_metrics(self, results: Mapping[str, Any]) -> dict[str, float]:
        """Maps `metrics/mAP50-95(M)`-style keys to `mask_map50_95` and friends."""
        return {name: float(results.get(key, 0.0)) for name, key in VAL_KEYS.items()}

    def test_metric_names(
        self, class_names: Sequence[str], positive_class: str | None = None
    ) -> list[str]:
        """Box and mask mAP, mIoU, pixel accuracy and `iou_<class>` per class."""
        from visionops.tasks.classify.metrics import metric_key

        return [
            *INSTANCE_METRICS,
            *SEMANTIC_METRICS,
            *(metric_key("iou", c) for c in class_names),
        ]

    def evaluation_html(self, report: EvalReport, plot_dir: Path) -> str:
        """The shared page plus the IoU chart and the pixel confusion matrix."""
        from visionops.tasks.segment.evaluate import evaluation_html

        return evaluation_html(report, plot_dir, self.metric_label)

    def render(
        self, frame: np.ndarray, prediction: Any, names: Mapping[int, str]
    ) -> np.ndarray:
        """Translucent class-coloured masks and a legend of per-class area."""
        from visionops.tasks.segment.render import render_segmentation

        return render_segmentation(frame, prediction.class_map(), names)
