"""Detection test evaluation with Ultralytics: box metrics, per-class AP, matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from visionops.engine.task import Scores
from visionops.engine.ultralytics import load_model, validate
from visionops.tasks.detect.metrics import box_metrics
from visionops.tasks.detect.resample import STAT_FIELDS, collect_stats, per_image

if TYPE_CHECKING:
    from visionops.engine.task import EvalJob


def measure(job: EvalJob) -> Scores:
    """Ultralytics validation on the job's split: box metrics, per-class AP and
    the confusion matrix normalised per true class, and each image's matches
    (for the bootstrap)."""
    model = load_model(job)
    matches = collect_stats(model)
    metrics = validate(job, model)
    names = [str(n) for n in metrics.names.values()]
    box = metrics.box
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
    return Scores(
        metrics=box_metrics(box.map, box.map50, box.mp, box.mr),
        class_names=names,
        per_class=per_class,
        confusion_matrix=normalised.round(4).tolist(),
        per_image=per_image(matches, ("tp", *STAT_FIELDS)),
    )
