"""Detection test evaluation with Ultralytics: box metrics, per-class AP, matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visionops.core.files import sha256_file
from visionops.engine.report import EvalReport
from visionops.engine.ultralytics import configure_ultralytics, resolve_device
from visionops.tasks.detect.resample import STAT_FIELDS, collect_stats, per_image


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
    model = YOLO(str(weights), task="detect")
    matches = collect_stats(model)  # per image, for the bootstrap
    metrics = model.val(
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
        task="detect",
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
        per_image=per_image(matches, ("tp", *STAT_FIELDS)),
    )
