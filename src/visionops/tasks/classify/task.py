"""The classification task: Ultralytics `classify`, top-1 and friends, ONNX softmax."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from visionops.data.manifest import IMAGE_CLASS
from visionops.engine.task import Task, TaskError

PER_CLASS = ("precision", "recall", "f1", "support")
TWO_CLASS = ("roc_auc", "pr_auc", "sensitivity", "specificity")


class ClassifyTask(Task):
    """One class per image (e.g. NORMAL / PNEUMONIA), judged by top-1 on test."""

    name = "classify"
    ultralytics_task = "classify"
    model_suffix = "-cls"
    default_model_name = "image-classifier"
    description = "YOLO image classifier trained on the latest ingested dataset."
    val_metrics_names = ("top1", "top5")
    default_metric = "top1"
    headline_metrics = ("top1", "top5", "macro_f1", *TWO_CLASS)
    metric_labels = {
        "top1": "top-1",
        "top5": "top-5",
        "macro_precision": "macro-precision",
        "macro_recall": "macro-recall",
        "macro_f1": "macro-F1",
        "support": "support",
        "roc_auc": "ROC-AUC",
        "pr_auc": "PR-AUC",
        "sensitivity": "sensitivity",
        "specificity": "specificity",
    }
    pipelines = frozenset({"training", "deployment", "batch"})
    thresholds = ()  # the top class whatever its probability
    # Every class's probability per image; the most probable class written on.
    batch_outputs = "visionops.tasks.classify.batch:ClassifyBatchOutput"
    # Video: the top class per frame, no tracks.
    video_outputs = "visionops.tasks.classify.video:ClassifyVideoOutput"
    renderer = "visionops.tasks.classify.render:draw_classification"
    label_kinds = (IMAGE_CLASS,)
    # Resize, centre crop, softmax, as `YOLO.predict`; the pyfunc answers every
    # class's probability per image.
    predictor_class = "visionops.tasks.classify.onnx:OnnxClassifier"
    pyfunc_class = "visionops.tasks.classify.pyfunc:ClassifierOnnxModel"
    # Predicts every image of the split with the `.pt` and scores the
    # probabilities (confusion matrices, counts and normalised, land in
    # `out_dir`); any test metric resampled from the kept probabilities.
    measurer = "visionops.tasks.classify.evaluate:measure"
    resampler = "visionops.tasks.classify.resample:classification_metric"
    # One known image-level class per item.
    label_checker = "visionops.tasks.classify.labels:check_labels"
    # `/classify`, with `top_k`: the most probable classes.
    serving_spec = "visionops.tasks.classify.serving:SERVING"
    answerer = "visionops.tasks.classify.serving:answer"
    # Labelling batches: the predictions as pre-labels in the dataset's format.
    review_exporter = "visionops.tasks.classify.review:ClassifyReview"
    # The prediction record's figures: top class, probabilities, top-1 margin.
    summarizer = "visionops.tasks.classify.summary:summary"
    featurizer = "visionops.tasks.classify.features:prediction_features"

    def val_metrics(self, results: Mapping[str, Any]) -> dict[str, float]:
        """Maps `metrics/accuracy_top1`-style keys to `top1` and `top5`."""
        return {
            "top1": float(results.get("metrics/accuracy_top1", 0.0)),
            "top5": float(results.get("metrics/accuracy_top5", 0.0)),
        }

    def test_metric_names(
        self, class_names: Sequence[str], positive_class: str | None = None
    ) -> list[str]:
        """top1 (top5 from 5 classes), macro and per-class P/R/F1, and for two
        classes ROC-AUC, PR-AUC, sensitivity and specificity."""
        from visionops.tasks.classify.metrics import metric_key

        if positive_class is not None and len(class_names) != 2:
            raise TaskError(
                f"positive_class {positive_class!r} needs exactly two classes, "
                f"got {list(class_names)}"
            )
        names = ["top1"] + (["top5"] if len(class_names) >= 5 else [])
        names += ["macro_precision", "macro_recall", "macro_f1"]
        names += [metric_key(m, c) for c in class_names for m in PER_CLASS]
        if len(class_names) == 2:
            names += list(TWO_CLASS)
        return names

    @property
    def counts_key(self) -> str:
        """Classification cards count images per class."""
        return "images_per_class"
