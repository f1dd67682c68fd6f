"""Held-out evaluation of any task: the report, its HTML view, ONNX latency."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import cv2
from pydantic import BaseModel

from visionops.tasks import DEFAULT_TASK, get_task
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


def onnx_latency_ms(
    onnx_path: Path, images: list[Path], runs: int = 20, task: str = DEFAULT_TASK
) -> float:
    """Median single-image CPU latency of the ONNX model (one thread, as served).

    Preprocessing, inference and postprocessing are all inside the timing, after
    one warm-up run.
    """
    detector = get_task(task).predictor(
        onnx_path, threads=1, providers=["CPUExecutionProvider"]
    )
    frames = [f for f in (cv2.imread(str(p)) for p in images[:8]) if f is not None]
    if not frames:
        raise ValueError("No readable image to time the model on.")
    detector.predict(frames[0])
    timings = []
    for i in range(runs):
        start = time.perf_counter()
        detector.predict(frames[i % len(frames)])
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)
