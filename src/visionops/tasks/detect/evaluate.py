"""Detection test evaluation with Ultralytics: box metrics, per-class AP, matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from visionops.engine.task import Scores
from visionops.engine.ultralytics import validate
from visionops.tasks.detect.metrics import box_metrics

if TYPE_CHECKING:
    from visionops.engine.task import EvalJob


def measure(job: EvalJob) -> Scores:
    """Ultralytics validation on the job's split: box metrics, per-class AP and
    the confusion matrix normalised per true class."""
    metrics = validate(job)
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
    )
