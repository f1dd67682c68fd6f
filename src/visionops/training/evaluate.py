"""Held-out evaluation: metrics, per-class AP, confusion matrix, ONNX latency."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel

from visionops.fsutil import sha256_file
from visionops.training.yolo import configure_ultralytics, resolve_device


class EvalReport(BaseModel):
    """A model measured on one split of one dataset version."""

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


def evaluate_weights(
    weights: Path,
    data_yaml: Path,
    dataset_hash: str,
    out_dir: Path,
    *,
    imgsz: int,
    batch: int = 8,
    device: str = "auto",
    split: str = "test",
) -> EvalReport:
    """Runs Ultralytics validation of `weights` on one split and collects the results.

    Plots (PR curves, normalised confusion matrix, sample predictions) land in
    `out_dir`.

    Raises:
        ValueError: The dataset has no such split.
    """
    import yaml
    from ultralytics import YOLO

    data = yaml.safe_load(data_yaml.read_text())
    if not data.get(split):
        raise ValueError(
            f"The dataset has no {split} split ({data_yaml}); re-run ingestion with "
            f"split.{split} > 0 so models are measured on images they never saw."
        )
    images = len(list((data_yaml.parent / data[split]).glob("*")))
    configure_ultralytics()
    metrics = YOLO(str(weights)).val(
        data=str(data_yaml),
        split=split,
        imgsz=imgsz,
        batch=batch,
        device=resolve_device(device),
        plots=True,
        project=str(out_dir.parent),
        name=out_dir.name,
        exist_ok=True,
        verbose=False,
    )
    names = [str(n) for n in metrics.names.values()]
    box = metrics.box
    precision, recall = float(box.mp), float(box.mr)
    per_class = []
    for i, cls in enumerate(box.ap_class_index):
        p, r, ap50, ap = box.class_result(i)
        per_class.append(
            {
                "class": names[int(cls)],
                "precision": float(p),
                "recall": float(r),
                "ap50": float(ap50),
                "ap50_95": float(ap),
            }
        )
    matrix = np.asarray(metrics.confusion_matrix.matrix, dtype=float)
    normalised = matrix / (matrix.sum(0, keepdims=True) + 1e-9)  # per true class
    return EvalReport(
        split=split,
        dataset_hash=dataset_hash,
        weights_sha256=sha256_file(weights),
        imgsz=imgsz,
        images=images,
        metrics={
            "map50_95": float(box.map),
            "map50": float(box.map50),
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall)
            if precision + recall
            else 0.0,
        },
        per_class=per_class,
        class_names=names,
        confusion_matrix=normalised.round(4).tolist(),
    )


def onnx_latency_ms(onnx_path: Path, images: list[Path], runs: int = 20) -> float:
    """Median single-image CPU latency of the ONNX model (one thread, as served).

    Preprocessing, inference and postprocessing are all inside the timing, after
    one warm-up run.
    """
    from visionops.inference import OnnxDetector

    detector = OnnxDetector(onnx_path, threads=1, providers=["CPUExecutionProvider"])
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

    columns = ("class", "precision", "recall", "ap50", "ap50_95")
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
