"""The INT8 gate: quantize the ONNX export, measure both, serve INT8 if it holds."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from visionops.engine.bootstrap import Interval, compare_reports
from visionops.engine.report import Precision, QuantizationReport, Rule

if TYPE_CHECKING:
    from visionops.config import EvaluationSettings
    from visionops.data.version import DatasetVersion
    from visionops.engine.task import Task

logger = logging.getLogger(__name__)
INT8_SUFFIX = ".int8.onnx"


def gate(
    metric: str,
    fp32_score: float,
    int8_score: float | None,
    max_drop: float,
    *,
    rule: Rule = "margin",
    interval: Interval | None = None,
) -> tuple[Precision, str]:
    """Serves INT8 unless it drops more than `max_drop` (absolute) below FP32.

    `metric` only names the metric in the reason (its display name).
    `margin` compares the two scores. `confident` reads the paired bootstrap
    interval of INT8 minus FP32: FP32 is served only when the whole interval
    lies below `-max_drop` (the drop is confidently larger than allowed);
    without an interval it falls back to `margin`.

    Returns:
        The precision to serve and the reason.
    """
    if int8_score is None:
        return "fp32", "no INT8 score"
    drop = fp32_score - int8_score
    if rule == "confident" and interval is not None:
        bounds = (
            f"{interval.confidence:.0%} interval of INT8 - FP32 {interval.low:+.4f} "
            f"to {interval.high:+.4f} over {interval.images} test images"
        )
        if -interval.high > max_drop:
            return "fp32", (
                f"INT8 {metric} {int8_score:.4f} drops {drop:.4f} below FP32 "
                f"{fp32_score:.4f}, confidently more than {max_drop:g} ({bounds})"
            )
        return "int8", (
            f"INT8 {metric} {int8_score:.4f} (drop {drop:+.4f} from FP32 "
            f"{fp32_score:.4f}) is not confidently more than {max_drop:g} below "
            f"it ({bounds})"
        )
    # A hair of float noise must not turn an exactly-at-the-limit drop into a fail.
    if drop <= max_drop + 1e-9:
        return "int8", (
            f"INT8 {metric} {int8_score:.4f} is within {max_drop:g} of FP32 "
            f"{fp32_score:.4f} (drop {drop:+.4f})"
        )
    return "fp32", (
        f"INT8 {metric} {int8_score:.4f} drops {drop:.4f} below FP32 "
        f"{fp32_score:.4f}, more than {max_drop:g}"
    )


def quantize_and_gate(
    task: Task,
    fp32_onnx: Path,
    dataset: DatasetVersion,
    settings: EvaluationSettings,
    metric: str,
    out_dir: Path,
    *,
    fp32_latency_ms: float | None = None,
) -> tuple[QuantizationReport, Path | None]:
    """Quantizes the FP32 export, evaluates both on the test split, applies the gate.

    Calibration uses at most `settings.calibration_images` images of the
    validation split, preprocessed by the task's predictor (`preprocess`), so
    the ranges are those of served inputs.

    Args:
        task: The model's task.
        fp32_onnx: The FP32 ONNX export.
        dataset: The dataset version (validation for calibration, test to measure).
        settings: `max_quantization_drop`, `calibration_images`, `batch`, ...
        metric: The promotion metric.
        out_dir: Where the INT8 model and both evaluations' plots go.
        fp32_latency_ms: The FP32 export's latency, if already measured.

    Returns:
        The report, and the INT8 model's path (None when quantization failed).

    Raises:
        ValueError: The task's evaluation has no such metric.
    """
    from visionops.engine.latency import onnx_latency_ms
    from visionops.engine.quantize import QuantizationError, quantize

    predictor = task.predictor(fp32_onnx)
    # Both exports are measured at the size they take, where they are served.
    measured = settings.for_model(predictor.imgsz[0], "cpu")
    fp32 = task.evaluate(fp32_onnx, dataset, out_dir / "test_onnx_fp32", measured)
    if metric not in fp32.metrics:
        raise ValueError(
            f"INT8 gate: {metric!r} is not a test metric of this {task.name} model; "
            f"known: {sorted(fp32.metrics)}"
        )
    test_images = task.split_images(dataset, "test")
    if fp32_latency_ms is None:
        fp32_latency_ms = onnx_latency_ms(
            task, fp32_onnx, test_images, settings.latency_runs
        )
    report = QuantizationReport(
        metric=metric,
        max_drop=settings.max_quantization_drop,
        fp32_score=fp32.metrics[metric],
        fp32_metrics=fp32.metrics,
        fp32_latency_ms=fp32_latency_ms,
    )
    calibration = task.split_images(dataset, "val")
    int8_onnx = out_dir / (fp32_onnx.name.removesuffix(".onnx") + INT8_SUFFIX)
    try:
        quantize(
            fp32_onnx,
            calibration,
            int8_onnx,
            preprocess=predictor.preprocess,
            max_images=settings.calibration_images,
        )
    except QuantizationError as err:
        logger.warning("INT8 quantization failed, serving FP32: %s", err)
        report.reason = f"quantization failed: {err}"
        return report, None
    int8 = task.evaluate(int8_onnx, dataset, out_dir / "test_onnx_int8", measured)
    report.int8_score = int8.metrics.get(metric)
    report.int8_metrics = int8.metrics
    report.int8_latency_ms = onnx_latency_ms(
        task, int8_onnx, test_images, settings.latency_runs
    )
    report.calibration_images = min(len(calibration), settings.calibration_images)
    report.interval, report.interval_note = compare_reports(
        task, int8, fp32, metric, **settings.bootstrap.model_dump()
    )
    # What decides: `margin` stands in for `confident` without an interval.
    report.rule = settings.quantization_rule if report.interval else "margin"
    report.precision, report.reason = gate(
        task.metric_label(metric),
        report.fp32_score,
        report.int8_score,
        report.max_drop,
        rule=settings.quantization_rule,
        interval=report.interval,
    )
    return report, int8_onnx
