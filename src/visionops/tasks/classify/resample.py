"""Classification metrics per image: every test metric on resamples of the images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from visionops.engine.bootstrap import MetricFn, PerImage, counts, per_resample
from visionops.tasks.classify.metrics import classification_metrics


def classification_metric(
    results: PerImage, metric: str, class_names: Sequence[str]
) -> MetricFn:
    """A classification test metric on resamples of the test images.

    top-1 is vectorised (the mean of per-image hits); the other metrics run
    `classification_metrics` on each resample's labels and probabilities.

    Raises:
        ValueError: Not a metric `classification_metrics` yields here.
    """
    labels = np.concatenate(results.arrays("label", np.int64) or [np.zeros(0, int)])
    probs = np.stack(results.arrays("probs"))
    names = list(class_names)
    positive = results.params.get("positive_class")
    known = classification_metrics(labels, probs, names, positive_class=positive)
    if metric not in known.metrics:
        raise ValueError(f"{metric!r} is not a classification metric here")
    if metric == "top1":
        hits = (probs.argmax(axis=1) == labels).astype(np.float64)

        def top1(indices: np.ndarray) -> np.ndarray:
            return counts(indices, len(hits)) @ hits / indices.shape[1]

        return top1

    def one(indices: np.ndarray) -> float:
        return classification_metrics(
            labels[indices], probs[indices], names, positive_class=positive
        ).metrics[metric]

    return per_resample(one)
