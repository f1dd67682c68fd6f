"""Held-out evaluation of any task: the report the stages, gate and registry share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel

from visionops.engine.bootstrap import Interval, PerImage

Precision = Literal["int8", "fp32"]
# How a verdict reads the test split: `margin` compares the two scores,
# `confident` the bootstrap interval of their difference (see config.py).
Rule = Literal["margin", "confident"]


class QuantizationReport(BaseModel):
    """FP32 and INT8 ONNX exports measured the same way, and which one is served.

    Both scores come from the task's evaluation of the `.onnx` itself (Ultralytics
    runs it through ONNX Runtime) on the test split at the serving size, so the
    drop is INT8 against FP32 and nothing else.

    Attributes:
        metric: The promotion metric the gate compares.
        max_drop: The largest absolute drop that still serves INT8.
        fp32_score: The FP32 ONNX export's metric.
        int8_score: The INT8 model's metric (None: quantization failed).
        fp32_metrics: Every test metric of the FP32 ONNX export.
        int8_metrics: Every test metric of the INT8 model.
        fp32_latency_ms: Median CPU latency of the FP32 export (one thread).
        int8_latency_ms: The same for the INT8 model.
        calibration_images: Validation images the INT8 model was calibrated on.
        precision: What is served: `int8` or `fp32`.
        reason: Why, in one sentence.
        rule: The rule that decided (`margin` or `confident`).
        interval: INT8 minus FP32 on the metric, paired bootstrap over the
            test images (None: not computed; `interval_note` says why).
        interval_note: Why there is no interval.
    """

    metric: str
    max_drop: float
    fp32_score: float
    int8_score: float | None = None
    fp32_metrics: dict[str, float] = {}
    int8_metrics: dict[str, float] = {}
    fp32_latency_ms: float | None = None
    int8_latency_ms: float | None = None
    calibration_images: int = 0
    precision: Precision = "fp32"
    reason: str = ""
    rule: Rule = "margin"
    interval: Interval | None = None
    interval_note: str = ""

    @property
    def drop(self) -> float | None:
        """FP32 score minus INT8 score (positive: INT8 is worse)."""
        return None if self.int8_score is None else self.fp32_score - self.int8_score

    def mlflow_metrics(self) -> dict[str, float]:
        """`test_onnx_{fp32,int8}_<metric>` and latencies, for the candidate's run."""
        values = {
            f"test_onnx_fp32_{self.metric}": self.fp32_score,
            f"test_onnx_int8_{self.metric}": self.int8_score,
            "test_onnx_fp32_latency_ms": self.fp32_latency_ms,
            "test_onnx_int8_latency_ms": self.int8_latency_ms,
            **(
                self.interval.metrics("test_onnx_int8_vs_fp32") if self.interval else {}
            ),
        }
        return {k: v for k, v in values.items() if v is not None}

    def tags(self) -> dict[str, str]:
        """`precision` and `quantization.*`: run and registered-version tags."""

        def fmt(value: float | None) -> str:
            return "" if value is None else f"{value:.6f}"

        return {
            "precision": self.precision,
            "quantization.reason": self.reason,
            "quantization.metric": self.metric,
            "quantization.max_drop": f"{self.max_drop:g}",
            "quantization.fp32_score": fmt(self.fp32_score),
            "quantization.int8_score": fmt(self.int8_score),
            "quantization.fp32_latency_ms": fmt(self.fp32_latency_ms),
            "quantization.int8_latency_ms": fmt(self.int8_latency_ms),
            "quantization.rule": self.rule,
            **(self.interval.tags("quantization") if self.interval else {}),
        }

    def markdown(self, label: Callable[[str], str] = str) -> str:
        """The decision report's section: both scores, both latencies, the verdict.

        Args:
            label: The metric's display name (`Task.metric_label`).
        """

        def cell(value: float | None, pattern: str) -> str:
            return "-" if value is None else format(value, pattern)

        if self.rule == "confident":
            rule = (
                f"serve INT8 unless its {label(self.metric)} drop below FP32 is "
                "confidently "
                f"larger than {self.max_drop:g} (the whole interval beyond it)"
            )
        else:
            rule = (
                f"serve INT8 if its {label(self.metric)} is within {self.max_drop:g} "
                "of FP32"
            )
        if self.interval is not None:
            interval = f"INT8 - FP32: {self.interval.text()}."
            if noise := self.interval.noise():
                interval += f" {noise[0].upper()}{noise[1:]}."
        else:
            interval = f"INT8 - FP32: no interval ({self.interval_note or 'none'})."
        return "\n".join(
            [
                f"## Served precision: {self.precision.upper()}",
                "",
                f"**Rule ({self.rule}):** {rule} (both ONNX, test split). "
                f"{self.reason}.",
                "",
                interval,
                "",
                "| | FP32 ONNX | INT8 ONNX |",
                "|---|---|---|",
                f"| {label(self.metric)} | {cell(self.fp32_score, '.4f')} | "
                f"{cell(self.int8_score, '.4f')} |",
                f"| latency (ms, CPU, 1 thread) | {cell(self.fp32_latency_ms, '.1f')} "
                f"| {cell(self.int8_latency_ms, '.1f')} |",
                "",
                f"INT8: static QDQ, calibrated on {self.calibration_images} "
                "validation images.",
            ]
        )


class EvalReport(BaseModel):
    """A model measured on one split of one dataset version.

    `metrics` are flat (`map50_95`, `top1`, `recall_<class>`, ...): promotion
    rules, MLflow metrics and registry tags use these names.
    """

    task: str
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
    # What the task recomputes its metrics from on any resample of the images
    # (the paired bootstrap of promotion and of the INT8 gate).
    per_image: PerImage | None = None
