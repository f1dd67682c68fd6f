"""The detection task: Ultralytics `detect`, box mAP, `OnnxDetector`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from visionops.data.manifest import BOXES
from visionops.engine.task import Task
from visionops.tasks.detect.metrics import METRICS, box_metrics


class DetectTask(Task):
    """Boxes around objects, judged by mAP50-95 on the test split."""

    name = "detect"
    ultralytics_task = "detect"
    model_suffix = ""
    # Kept from before tasks existed: the README, configs and registries use it.
    default_model_name = "board-detector"
    description = "YOLO detector trained on the latest ingested dataset."
    val_metrics_names = METRICS
    default_metric = "map50_95"
    headline_metrics = METRICS
    pipelines = frozenset({"training", "deployment", "batch"})
    # Label files and one CSV row per box; boxes and `name conf` labels drawn.
    batch_outputs = "visionops.tasks.detect.batch:DetectBatchOutput"
    # Video: a row per box with its track id (Ultralytics' trackers).
    video_outputs = "visionops.tasks.detect.video:TrackedVideoOutput"
    renderer = "visionops.tasks.detect.render:draw_detections"
    label_kinds = (BOXES,)
    # Letterbox, decode, NMS, as `YOLO.predict`; the pyfunc answers a row per box.
    predictor_class = "visionops.tasks.detect.onnx:OnnxDetector"
    pyfunc_class = "visionops.tasks.detect.pyfunc:YoloOnnxModel"
    # Ultralytics validation: box metrics, per-class AP, confusion matrix; box
    # metrics resampled from the kept matches (mAP as `ap_per_class` computes it).
    measurer = "visionops.tasks.detect.evaluate:measure"
    resampler = "visionops.tasks.detect.resample:detection_metric"
    # Box lines, clipped and deduplicated.
    label_checker = "visionops.tasks.detect.labels:check_labels"
    # `/detect` and `/detect_batch`: boxes and counts per class.
    serving_spec = "visionops.tasks.detect.serving:SERVING"
    answerer = "visionops.tasks.detect.serving:answer"
    # Labelling batches: the predictions as pre-labels in the dataset's format.
    review_exporter = "visionops.tasks.detect.review:DetectReview"
    # The prediction record's figures: objects and confidences per class.
    summarizer = "visionops.tasks.detect.summary:summary"
    featurizer = "visionops.tasks.detect.features:prediction_features"

    def val_metrics(self, results: Mapping[str, Any]) -> dict[str, float]:
        """Maps `metrics/mAP50-95(B)`-style keys to the project's names."""
        return box_metrics(
            *(
                results.get(f"metrics/{key}(B)", 0.0)
                for key in ("mAP50-95", "mAP50", "precision", "recall")
            )
        )

    def test_metric_names(
        self, class_names: Sequence[str], positive_class: str | None = None
    ) -> list[str]:
        """The five box metrics, whatever the classes."""
        return list(METRICS)
