"""Classification test evaluation: `.pt` probabilities over a split, scored."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from visionops.engine.bootstrap import PerImage
from visionops.engine.task import Scores
from visionops.engine.ultralytics import load_model, predict

if TYPE_CHECKING:
    from visionops.engine.task import EvalJob


def measure(job: EvalJob) -> Scores:
    """Scores the job's weights on one split of a classification dataset.

    The true class of an image comes from the dataset's layout (its class folder,
    `<split>/<class>/<image>`); the probabilities from Ultralytics' `predict`.
    The confusion matrices (counts and normalised per true class) are written to
    `job.out_dir` as PNGs.

    Raises:
        ValueError: The split holds a class the model does not know.
    """
    from visionops.tasks.classify.metrics import (
        classification_metrics,
        save_confusion_matrices,
    )

    model = load_model(job)
    names = [str(model.names[i]) for i in sorted(model.names)]
    rows = [r.probs.data.float().cpu().numpy() for r in predict(job, model)]
    probs = np.stack(rows) if rows else np.zeros((0, len(names)))
    index = {name: i for i, name in enumerate(names)}
    dataset, split = job.dataset, job.settings.split
    truth = [str(job.task.layout.image_class(dataset.root, p)) for p in job.images]
    unknown = sorted(set(truth) - set(index))
    if unknown:
        raise ValueError(
            f"The {split} split holds classes {unknown} the model does not know "
            f"({names}); train on this dataset version first."
        )
    labels = np.array([index[name] for name in truth], dtype=np.int64)
    positive = job.settings.positive_class
    result = classification_metrics(labels, probs, names, positive_class=positive)
    save_confusion_matrices(result, job.out_dir)
    return Scores(
        metrics=result.metrics,
        class_names=names,
        per_class=result.per_class,
        confusion_matrix=result.confusion_normalized.round(4).tolist(),
        per_image=PerImage(
            images=[p.name for p in job.images],
            values={"label": [[int(v)] for v in labels], "probs": probs.tolist()},
            params={"positive_class": positive} if positive else {},
        ),
    )
