"""The classification task: Ultralytics `classify`, top-1 and friends, ONNX softmax."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionops.data.manifest import IMAGE_CLASS
from visionops.engine.task import Serving, Task, TaskError

if TYPE_CHECKING:
    from visionops.data.manifest import Item
    from visionops.data.validate import CheckedLabels, LabelCheck
    from visionops.engine.bootstrap import MetricFn, PerImage
    from visionops.engine.task import EvalJob, Scores

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
    renderer = "visionops.tasks.classify.render:draw_classification"
    label_kinds = (IMAGE_CLASS,)

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

    def measure(self, job: EvalJob) -> Scores:
        """Predicts every image of the split with the `.pt` and scores the
        probabilities; confusion matrices (counts, normalised) land in `out_dir`."""
        from visionops.tasks.classify.evaluate import measure

        return measure(job)

    def resample_metric(
        self, per_image: PerImage, metric: str, class_names: Sequence[str]
    ) -> MetricFn:
        """Any test metric from the kept per-image probabilities."""
        from visionops.tasks.classify.resample import classification_metric

        return classification_metric(per_image, metric, class_names)

    def predictor(
        self, onnx_path: Path, *, threads: int = 1, providers: list[str] | None = None
    ) -> Any:
        """`OnnxClassifier`: resize, centre crop, softmax, as `YOLO.predict`."""
        from visionops.tasks.classify.onnx import OnnxClassifier

        return OnnxClassifier(onnx_path, threads=threads, providers=providers)

    def pyfunc_model(self) -> Any:
        """`ClassifierOnnxModel`: every class's probability per image."""
        from visionops.tasks.classify.pyfunc import ClassifierOnnxModel

        return ClassifierOnnxModel

    def serving(self) -> Serving:
        """`/classify`, with `top_k` (`tasks.classify.serving`)."""
        from visionops.tasks.classify.serving import SERVING

        return SERVING

    def answer(
        self, prediction: Any, names: Mapping[int, str], **parameters: Any
    ) -> dict[str, Any]:
        """The service's answer fields of one prediction (`serving.answer`)."""
        from visionops.tasks.classify.serving import answer

        return answer(prediction, names, **parameters)

    @property
    def counts_key(self) -> str:
        """Classification cards count images per class."""
        return "images_per_class"

    def check_labels(self, item: Item, check: LabelCheck) -> CheckedLabels:
        """One known image-level class per item (`tasks.classify.labels`)."""
        from visionops.tasks.classify.labels import check_labels

        return check_labels(item, check)
