"""The served model's CPU latency: what evaluation and the INT8 gate time."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

import cv2

if TYPE_CHECKING:
    from visionops.engine.task import Task


def onnx_latency_ms(
    task: Task, onnx_path: Path, images: list[Path], runs: int = 20
) -> float:
    """Median single-image CPU latency of the ONNX model (one thread, as served).

    Preprocessing, inference and postprocessing are all inside the timing, after
    one warm-up run.
    """
    predictor = task.predictor(onnx_path, threads=1, providers=["CPUExecutionProvider"])
    frames = [f for f in (cv2.imread(str(p)) for p in images[:8]) if f is not None]
    if not frames:
        raise ValueError("No readable image to time the model on.")
    predictor.predict(frames[0])
    timings = []
    for i in range(runs):
        start = time.perf_counter()
        predictor.predict(frames[i % len(frames)])
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)
