"""Held-out evaluation of any task: the report, its HTML view, ONNX latency."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import cv2
from pydantic import BaseModel

from visionops.tasks import DEFAULT_TASK, get_task


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
    latency_ms: float | None = None
    latency_imgsz: int | None = None


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


def evaluation_html(report: EvalReport, plot_dir: Path) -> str:
    """Metrics, per-class AP and the normalised confusion matrix as one HTML page."""
    import base64
    import html

    metrics = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:.4f}</td></tr>"
        for k, v in report.metrics.items()
    )
    if report.latency_ms is not None:
        metrics += (
            f"<tr><th>ONNX CPU latency @ {report.latency_imgsz}px</th>"
            f"<td>{report.latency_ms:.1f} ms</td></tr>"
        )

    def cell(value: float | str) -> str:
        return html.escape(value if isinstance(value, str) else f"{value:.4f}")

    columns = tuple(report.per_class[0]) if report.per_class else ("class",)
    per_class = "".join(
        "<tr>" + "".join(f"<td>{cell(row[k])}</td>" for k in columns) + "</tr>"
        for row in report.per_class
    )
    matrix = plot_dir / "confusion_matrix_normalized.png"
    image = (
        f'<img style="max-width:640px" src="data:image/png;base64,'
        f'{base64.b64encode(matrix.read_bytes()).decode()}">'
        if matrix.is_file()
        else ""
    )
    table = "<table border=1 cellpadding=4 style='border-collapse:collapse'>"
    header = "".join(f"<th>{c}</th>" for c in columns)
    return (
        "<html><body style='font-family:sans-serif'><h3>Test split: "
        f"{report.images} images, dataset {report.dataset_hash[:12]}</h3>"
        f"{table}{metrics}</table><h3>Per class</h3>{table}<tr>{header}</tr>"
        f"{per_class}</table><h3>Normalised confusion matrix</h3>{image}</body></html>"
    )
