"""Classification metrics from true class ids and predicted probabilities (numpy)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Files written by `save_confusion_matrices`, named as Ultralytics names its own.
CONFUSION_PNG = "confusion_matrix.png"
CONFUSION_NORMALIZED_PNG = "confusion_matrix_normalized.png"

# Characters MLflow accepts in a metric name; others in a class name become "_".
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
# Above this many classes the cells are too small to print their values in.
_MAX_ANNOTATED = 30


def metric_key(prefix: str, class_name: str) -> str:
    """Returns the flat metric key of a per-class metric, e.g. `recall_PNEUMONIA`.

    Characters MLflow refuses in a metric name (anything but letters, digits,
    `_`, `.` and `-`) become `_`, so `"no finding"` gives `recall_no_finding`.
    """
    return f"{prefix}_{_UNSAFE.sub('_', str(class_name))}"


@dataclass(frozen=True, eq=False)
class ClassificationMetrics:
    """Metrics of a classifier on one labelled set.

    Attributes:
        names: Class names by class id.
        metrics: Flat `{key: float}`, ready for `mlflow.log_metrics`; the keys
            are listed in `classification_metrics`.
        per_class: One row per class, in class-id order: `{"class_id",
            "class_name", "precision", "recall", "f1", "support"}`.
        confusion: (C, C) int64 counts; row = true class, column = predicted.
        confusion_normalized: (C, C) float64, each row divided by its true-class
            count (the diagonal is per-class recall); all-zero for a class with
            no image.
        positive_class: The class the two-class metrics treat as positive, None
            for other than two classes.
    """

    names: tuple[str, ...]
    metrics: dict[str, float]
    per_class: list[dict[str, Any]]
    confusion: np.ndarray
    confusion_normalized: np.ndarray
    positive_class: str | None

    def to_dict(self) -> dict[str, Any]:
        """Returns everything as JSON-ready lists and numbers."""
        return {
            "names": list(self.names),
            "positive_class": self.positive_class,
            "metrics": dict(self.metrics),
            "per_class": [dict(row) for row in self.per_class],
            "confusion": self.confusion.tolist(),
            "confusion_normalized": self.confusion_normalized.tolist(),
        }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (sklearn's default)."""
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    return np.divide(
        numerator,
        denominator,
        out=np.zeros_like(numerator),
        where=denominator > 0,
    )


def _check_inputs(
    y_true: Any, probs: Any, names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    names = tuple(str(n) for n in names)
    if not names:
        raise ValueError("names is empty; pass the class names by class id")
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, np.float64)
    if y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(f"y_true must be a non-empty (n,) array, got {y_true.shape}")
    if probs.shape != (y_true.size, len(names)):
        raise ValueError(
            f"probs has shape {probs.shape}; expected (n, C) = "
            f"({y_true.size}, {len(names)}) for {len(names)} class names"
        )
    if not np.issubdtype(y_true.dtype, np.integer):
        if not np.all(np.mod(y_true, 1) == 0):
            raise ValueError("y_true must hold integer class ids")
        y_true = y_true.astype(np.int64)
    bad = (y_true < 0) | (y_true >= len(names))
    if bad.any():
        raise ValueError(
            f"y_true holds class id {int(y_true[bad][0])}, outside 0..{len(names) - 1}"
        )
    if not np.isfinite(probs).all():
        raise ValueError("probs holds NaN or infinite values")
    keys = [metric_key("x", n) for n in names]
    if len(set(keys)) != len(keys):
        raise ValueError(
            f"class names {list(names)} give clashing metric keys once characters "
            "MLflow refuses are replaced; rename the classes"
        )
    return y_true.astype(np.int64), probs, names


def roc_auc(y_true_binary: Any, scores: Any) -> float:
    """Area under the ROC curve: the chance a positive outscores a negative.

    Tied scores count one half (the Mann-Whitney U statistic with average
    ranks), which equals the trapezoidal area of scikit-learn's `roc_auc_score`.

    Args:
        y_true_binary: (n,) booleans or 0/1, True for the positive class.
        scores: (n,) scores, higher meaning more likely positive.

    Returns:
        The area in [0, 1], NaN when the labels hold only one class.
    """
    positive = np.asarray(y_true_binary).astype(bool)
    scores = np.asarray(scores, np.float64)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    # Average 1-based ranks: every member of a run of equal scores gets the mean.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], sorted_scores.size]
    run_ranks = (starts + ends + 1) / 2.0
    ranks = np.empty(scores.size, np.float64)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(y_true_binary: Any, scores: Any) -> float:
    """Area under the precision-recall curve as average precision.

    `sum_k (R_k - R_{k-1}) * P_k` over the distinct score thresholds, highest
    first (scikit-learn's `average_precision_score`: no interpolation, tied
    scores enter together).

    Args:
        y_true_binary: (n,) booleans or 0/1, True for the positive class.
        scores: (n,) scores, higher meaning more likely positive.

    Returns:
        The average precision in [0, 1], NaN when there is no positive.
    """
    positive = np.asarray(y_true_binary).astype(bool)
    scores = np.asarray(scores, np.float64)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-scores, kind="stable")
    sorted_scores, hits = scores[order], positive[order]
    # The last index of each run of equal scores: one threshold per distinct score.
    last = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    tp = np.cumsum(hits)[last]
    predicted = last + 1
    precision = tp / predicted
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def classification_metrics(
    y_true: Any,
    probs: Any,
    names: Sequence[str],
    *,
    positive_class: str | None = None,
) -> ClassificationMetrics:
    """Scores predicted class probabilities against true class ids.

    The predicted class is the most probable one (the first on a tie). Ratios
    with nothing to divide by are 0, never NaN: the precision of a class never
    predicted, the recall of a class with no image (scikit-learn's
    `zero_division=0`). Macro averages are over every class in `names`.

    Keys of `metrics` (class names pass through `metric_key`):
        - `top1`: the fraction whose most probable class is the true one.
        - `top5`: the fraction whose true class is among the 5 most probable;
          only with 5 classes or more.
        - `macro_precision`, `macro_recall`, `macro_f1`.
        - `precision_<class>`, `recall_<class>`, `f1_<class>`, `support_<class>`
          (the number of images of the class) for every class.
        - With exactly two classes: `roc_auc` and `pr_auc` (average precision)
          of the positive class's probability, NaN when undefined (one class
          only, or no positive, in `y_true`); `sensitivity` (the positive
          class's recall) and `specificity` (the negative class's recall).

    Args:
        y_true: (n,) true class ids in 0..C-1.
        probs: (n, C) predicted probabilities (any scores ordering the classes
            work; rows need not sum to 1).
        names: The C class names, by class id.
        positive_class: The class name the two-class metrics call positive (e.g.
            "PNEUMONIA"). Default: the second class (class id 1), as in
            `NORMAL, PNEUMONIA`. Only for two classes.

    Returns:
        The metrics, per-class table and confusion matrices.

    Raises:
        ValueError: If the shapes disagree, a class id is out of range, the
            probabilities are not finite, two class names give one metric key,
            or `positive_class` is not one of two class names.
    """
    y_true, probs, names = _check_inputs(y_true, probs, names)
    n_classes = len(names)
    if positive_class is not None:
        if n_classes != 2:
            raise ValueError(
                f"positive_class={positive_class!r} needs exactly two classes, "
                f"got {list(names)}"
            )
        if positive_class not in names:
            raise ValueError(
                f"positive_class={positive_class!r} is not a class; "
                f"choose one of {list(names)}"
            )
    elif n_classes == 2:
        positive_class = names[1]

    predicted = probs.argmax(axis=1)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (y_true, predicted), 1)
    true_positives = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted_counts = confusion.sum(axis=0)
    precision = _ratio(true_positives, predicted_counts)
    recall = _ratio(true_positives, support)
    f1 = _ratio(2 * precision * recall, precision + recall)

    metrics: dict[str, float] = {"top1": float(np.mean(predicted == y_true))}
    if n_classes >= 5:
        # Stable sort of negated scores: ties keep the lower class id first.
        top5 = np.argsort(-probs, axis=1, kind="stable")[:, :5]
        metrics["top5"] = float(np.mean((top5 == y_true[:, None]).any(axis=1)))
    metrics["macro_precision"] = float(precision.mean())
    metrics["macro_recall"] = float(recall.mean())
    metrics["macro_f1"] = float(f1.mean())
    per_class = []
    for class_id, name in enumerate(names):
        row = {
            "class_id": class_id,
            "class_name": name,
            "precision": float(precision[class_id]),
            "recall": float(recall[class_id]),
            "f1": float(f1[class_id]),
            "support": int(support[class_id]),
        }
        per_class.append(row)
        for field, values in (
            ("precision", precision),
            ("recall", recall),
            ("f1", f1),
            ("support", support),
        ):
            metrics[metric_key(field, name)] = float(values[class_id])

    if positive_class is not None:
        positive_id = names.index(positive_class)
        is_positive = y_true == positive_id
        scores = probs[:, positive_id]
        metrics["roc_auc"] = roc_auc(is_positive, scores)
        metrics["pr_auc"] = average_precision(is_positive, scores)
        metrics["sensitivity"] = float(recall[positive_id])
        metrics["specificity"] = float(recall[1 - positive_id])

    return ClassificationMetrics(
        names=names,
        metrics=metrics,
        per_class=per_class,
        confusion=confusion,
        confusion_normalized=_ratio(confusion, support[:, None]),
        positive_class=positive_class,
    )


def save_confusion_matrices(
    result: ClassificationMetrics, out_dir: Path | str
) -> dict[str, Path]:
    """Draws the confusion matrix as counts and row-normalised, one PNG each.

    Rows are true classes, columns predicted ones, as in `result.confusion`.
    Rendered with matplotlib's Agg canvas (no display, no pyplot state).

    Args:
        result: What `classification_metrics` returned.
        out_dir: The folder to write into (created when missing).

    Returns:
        `{"confusion": <dir>/confusion_matrix.png, "confusion_normalized":
        <dir>/confusion_matrix_normalized.png}`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "confusion": out_dir / CONFUSION_PNG,
        "confusion_normalized": out_dir / CONFUSION_NORMALIZED_PNG,
    }
    _plot_matrix(
        result.confusion, result.names, "Confusion matrix (counts)", paths["confusion"]
    )
    _plot_matrix(
        result.confusion_normalized,
        result.names,
        "Confusion matrix (normalised per true class)",
        paths["confusion_normalized"],
    )
    return paths


def _plot_matrix(
    matrix: np.ndarray, names: Sequence[str], title: str, path: Path
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(names)
    side = min(4.0 + 0.45 * n, 20.0)
    figure = Figure(figsize=(side + 1.5, side), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    normalized = matrix.dtype.kind == "f"
    peak = 1.0 if normalized else max(int(matrix.max()), 1)
    image = axes.imshow(matrix, cmap="Blues", vmin=0, vmax=peak)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(n), labels=list(names))
    if n > 3:
        axes.tick_params(axis="x", labelrotation=45)
        for label in axes.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    axes.set_yticks(range(n), labels=list(names))
    axes.set_xlabel("Predicted")
    axes.set_ylabel("True")
    axes.set_title(title)
    if n <= _MAX_ANNOTATED:
        for (row, col), value in np.ndenumerate(matrix):
            text = f"{value:.2f}" if normalized else str(int(value))
            # White on dark cells, black on light ones.
            color = "white" if value > 0.5 * peak else "black"
            axes.text(col, row, text, ha="center", va="center", color=color)
    figure.tight_layout()
    figure.savefig(path)
