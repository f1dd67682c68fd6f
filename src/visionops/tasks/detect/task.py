"""The detection task: Ultralytics `detect`, box mAP, `OnnxDetector`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionops.engine.task import Task

if TYPE_CHECKING:
    import numpy as np

    from visionops.data.version import DatasetVersion
    from visionops.engine.bootstrap import MetricFn, PerImage
    from visionops.engine.report import EvalReport

METRICS = ("map50_95", "map50", "precision", "recall", "f1")


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


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

    def val_metrics(self, results: Mapping[str, Any]) -> dict[str, float]:
        """Maps `metrics/mAP50-95(B)`-style keys to the project's names."""
        precision = float(results.get("metrics/precision(B)", 0.0))
        recall = float(results.get("metrics/recall(B)", 0.0))
        return {
            "map50_95": float(results.get("metrics/mAP50-95(B)", 0.0)),
            "map50": float(results.get("metrics/mAP50(B)", 0.0)),
            "precision": precision,
            "recall": recall,
            "f1": _f1(precision, recall),
        }

    def test_metric_names(
        self, class_names: Sequence[str], positive_class: str | None = None
    ) -> list[str]:
        """The five box metrics, whatever the classes."""
        return list(METRICS)

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
        """Ultralytics validation on one split: box metrics, per-class AP, matrix."""
        from visionops.tasks.detect.evaluate import evaluate_weights

        return evaluate_weights(
            weights,
            dataset.data_yaml,
            dataset.hash,
            out_dir,
            imgsz=imgsz,
            batch=batch,
            device=device,
            split=split,
        )

    def resample_metric(
        self, per_image: PerImage, metric: str, class_names: Sequence[str]
    ) -> MetricFn:
        """Box metrics from the kept matches: mAP as `ap_per_class` computes it."""
        from visionops.tasks.detect.resample import detection_metric

        return detection_metric(per_image, metric, class_names)

    def predictor(
        self, onnx_path: Path, *, threads: int = 1, providers: list[str] | None = None
    ) -> Any:
        """`OnnxDetector`: letterbox, decode, NMS, as `YOLO.predict`."""
        from visionops.engine.onnx import OnnxDetector

        return OnnxDetector(onnx_path, threads=threads, providers=providers)

    def log_model(self, onnx_path: Path, metadata: dict[str, Any]) -> Any:
        """The pyfunc around the ONNX detector (`visionops.tasks.detect.pyfunc`)."""
        from visionops.tasks.detect.pyfunc import log_pyfunc_model

        return log_pyfunc_model(onnx_path, name="model", metadata=metadata)

    def batch_output(
        self, out_dir: Path, names: Sequence[str], folder: Path, files: Sequence[Path]
    ) -> Any:
        """Label files, one CSV row per box (`tasks.detect.batch`)."""
        from visionops.tasks.detect.batch import DetectBatchOutput

        return DetectBatchOutput(out_dir, names, folder, files)

    def render(
        self, frame: np.ndarray, prediction: Any, names: Mapping[int, str]
    ) -> np.ndarray:
        """Boxes and `name conf` labels drawn on a copy of the frame."""
        from visionops.tasks.detect.render import draw_detections

        return draw_detections(frame, prediction, dict(names))
