"""The classification task: Ultralytics `classify`, top-1 and friends, ONNX softmax."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionops.engine.task import Task, TaskError

if TYPE_CHECKING:
    import numpy as np

    from visionops.data.version import DatasetVersion
    from visionops.engine.bootstrap import MetricFn, PerImage
    from visionops.engine.report import EvalReport

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
    pipelines = frozenset({"training", "deployment", "batch"})

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

    def evaluate(
        self,
        weights: Path,
        dataset: DatasetVersion,
        out_dir: Path,
        *,
        imgsz: int,
        batch: int = 8,
        device: str = "auto",
        split: str = "test",
        positive_class: str | None = None,
    ) -> EvalReport:
        """Predicts every image of the split with the `.pt` and scores the
        probabilities; confusion matrices (counts, normalised) land in `out_dir`."""
        from visionops.tasks.classify.evaluate import evaluate_weights

        return evaluate_weights(
            weights,
            dataset,
            out_dir,
            imgsz=imgsz,
            batch=batch,
            device=device,
            split=split,
            positive_class=positive_class,
        )

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

    def predict(
        self,
        predictor: Any,
        frames: Sequence[np.ndarray],
        *,
        timing: dict[str, float] | None = None,
        **thresholds: Any,
    ) -> list[Any]:
        """Class probabilities per frame; a classifier has no thresholds."""
        return predictor.predict_batch(frames, timing=timing)

    def batch_output(
        self, out_dir: Path, names: Sequence[str], folder: Path, files: Sequence[Path]
    ) -> Any:
        """Every class's probability per image (`tasks.classify.batch`)."""
        from visionops.tasks.classify.batch import ClassifyBatchOutput

        return ClassifyBatchOutput(out_dir, names, folder, files)

    def render(
        self, frame: np.ndarray, prediction: Any, names: Mapping[int, str]
    ) -> np.ndarray:
        """The most probable class and its probability written on a copy."""
        from visionops.tasks.classify.render import draw_classification

        return draw_classification(frame, prediction, names)
