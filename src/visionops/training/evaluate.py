"""Held-out evaluation of any task: the report the stages, gate and registry share."""

from __future__ import annotations

from pydantic import BaseModel

from visionops.tasks import DEFAULT_TASK
from visionops.training.quantization import QuantizationReport


class EvalReport(BaseModel):
    """A model measured on one split of one dataset version.

    `metrics` are flat (`map50_95`, `top1`, `recall_<class>`, ...): promotion
    rules, MLflow metrics and registry tags use these names.
    """

    task: str = DEFAULT_TASK
    split: str
    dataset_hash: str
    weights_sha256: str
    imgsz: int
    images: int
    metrics: dict[str, float]
    per_class: list[dict[str, float | str]]
    class_names: list[str]
    confusion_matrix: list[list[float]]
    # The served ONNX export's latency: the INT8 model's when it is served.
    latency_ms: float | None = None
    latency_imgsz: int | None = None
    quantization: QuantizationReport | None = None
