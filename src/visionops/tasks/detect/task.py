"""The detection task: Ultralytics `detect`, box mAP, `OnnxDetector`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionops.data.manifest import BOXES
from visionops.engine.task import Serving, Task
from visionops.tasks.detect.metrics import METRICS, box_metrics

if TYPE_CHECKING:
    from visionops.data.manifest import Item
    from visionops.data.validate import CheckedLabels, LabelCheck
    from visionops.engine.bootstrap import MetricFn, PerImage
    from visionops.engine.task import EvalJob, Scores


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
    renderer = "visionops.tasks.detect.render:draw_detections"
    label_kinds = (BOXES,)

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

    def measure(self, job: EvalJob) -> Scores:
        """Ultralytics validation: box metrics, per-class AP, confusion matrix."""
        from visionops.tasks.detect.evaluate import measure

        return measure(job)

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
        from visionops.tasks.detect.onnx import OnnxDetector

        return OnnxDetector(onnx_path, threads=threads, providers=providers)

    def pyfunc_model(self) -> Any:
        """`YoloOnnxModel`: one row per box (`tasks.detect.pyfunc`)."""
        from visionops.tasks.detect.pyfunc import YoloOnnxModel

        return YoloOnnxModel

    def serving(self) -> Serving:
        """`/detect` and `/detect_batch` (`tasks.detect.serving`)."""
        from visionops.tasks.detect.serving import SERVING

        return SERVING

    def answer(
        self, prediction: Any, names: Mapping[int, str], **parameters: Any
    ) -> dict[str, Any]:
        """The service's answer fields of one prediction (`serving.answer`)."""
        from visionops.tasks.detect.serving import answer

        return answer(prediction, names)

    def check_labels(self, item: Item, check: LabelCheck) -> CheckedLabels:
        """Box lines, clipped and deduplicated (`tasks.detect.labels`)."""
        from visionops.tasks.detect.labels import check_labels

        return check_labels(item, check)
