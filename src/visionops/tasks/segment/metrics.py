"""Semantic segmentation metrics (per-class IoU, mIoU) from instance predictions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from visionops.data.masks import BACKGROUND, IGNORE, fill_polygons

# One confusion-matrix drawing and one metric-key rule for every task.
from visionops.tasks.classify.metrics import _plot_matrix, metric_key


def rasterise_instances(
    shape: tuple[int, int],
    class_ids: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    *,
    masks: Sequence[np.ndarray] | np.ndarray | None = None,
    polygons: Sequence[Sequence[np.ndarray]] | None = None,
) -> np.ndarray:
    """Turns predicted instances into one class map.

    Each pixel takes the class of the most confident instance that covers it
    (the earlier instance on equal confidence); pixels no instance covers are
    `BACKGROUND`.

    Args:
        shape: The image's (height, width).
        class_ids: One class id per instance.
        scores: One confidence per instance.
        masks: One (H, W) boolean mask per instance; or
        polygons: per instance, its (k, 2) outlines in pixel coordinates (see
            `masks.fill_polygons`).

    Returns:
        An int32 (H, W) class map.

    Raises:
        ValueError: If neither or both of `masks` and `polygons` are given, or
            the counts or mask shapes disagree.
    """
    if (masks is None) == (polygons is None):
        raise ValueError("pass either masks or polygons")
    regions = masks if masks is not None else polygons
    assert regions is not None
    class_ids = np.asarray(class_ids, np.int64).reshape(-1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if not len(class_ids) == len(scores) == len(regions):
        raise ValueError(
            f"{len(class_ids)} class ids, {len(scores)} scores and "
            f"{len(regions)} masks or polygons: one each per instance"
        )
    class_map = np.full(shape, BACKGROUND, np.int32)
    # Paint the least confident first so that more confident instances win;
    # on a tie the later instance is painted first, so the earlier one wins.
    order = np.lexsort((-np.arange(len(scores)), scores))
    for i in order.tolist():
        if masks is not None:
            mask = np.asarray(masks[i], bool)
            if mask.shape != tuple(shape):
                raise ValueError(f"mask {i} has shape {mask.shape}, expected {shape}")
            class_map[mask] = class_ids[i]
        else:
            fill_polygons(class_map, polygons[i], int(class_ids[i]))  # type: ignore[index]
    return class_map


def confusion_matrix(
    predicted: np.ndarray, truth: np.ndarray, num_classes: int
) -> np.ndarray:
    """Counts pixels by (true, predicted) class of one image.

    Args:
        predicted: An int32 class map (no `IGNORE` pixel).
        truth: The ground-truth class map of the same shape; its `IGNORE` pixels
            are left out.
        num_classes: The number of classes.

    Returns:
        An int64 (nc + 1, nc + 1) matrix, rows true and columns predicted, the
        last row and column being background.

    Raises:
        ValueError: If the shapes differ or a value is out of range.
    """
    if predicted.shape != truth.shape:
        raise ValueError(
            f"predicted map {predicted.shape} and ground truth {truth.shape} differ"
        )
    valid = truth != IGNORE
    t = truth[valid].astype(np.int64)
    p = predicted[valid].astype(np.int64)
    for name, values in (("ground truth", t), ("prediction", p)):
        if values.size and (values.max() >= num_classes or values.min() < BACKGROUND):
            raise ValueError(
                f"{name} holds values outside 0..{num_classes - 1} and background"
            )
    # Background (-1) goes to the last index.
    t[t == BACKGROUND] = num_classes
    p[p == BACKGROUND] = num_classes
    size = num_classes + 1
    return np.bincount(t * size + p, minlength=size * size).reshape(size, size)


class SemanticAccumulator:
    """Accumulates a pixel confusion matrix over a split.

    Attributes:
        names: Class names by id.
        confusion: The int64 (nc + 1, nc + 1) matrix so far (rows true, columns
            predicted, last index background).
    """

    def __init__(self, names: Sequence[str] | Mapping[int, str]) -> None:
        """Starts an empty matrix.

        Args:
            names: Class names by id (a list, or a dict with ids 0 .. nc-1).
        """
        if isinstance(names, Mapping):
            names = [str(names[i]) for i in range(len(names))]
        self.names = [str(n) for n in names]
        size = len(self.names) + 1
        self.confusion = np.zeros((size, size), np.int64)

    def update(self, predicted: np.ndarray, truth: np.ndarray) -> None:
        """Adds one image's predicted and ground-truth class maps."""
        self.confusion += confusion_matrix(predicted, truth, len(self.names))

    def metrics(self) -> dict[str, float]:
        """Returns `semantic_metrics` of the matrix so far."""
        return semantic_metrics(self.confusion, self.names)


def semantic_metrics(confusion: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Per-class IoU, mean IoU and pixel accuracy from a confusion matrix.

    For class c, with TP the pixels of c predicted c, FP the other pixels
    predicted c and FN the pixels of c predicted otherwise (background
    included), IoU = TP / (TP + FP + FN); ignored pixels count nowhere.

    Keys:
        `iou_<name>` per class (`metric_key`: characters MLflow refuses in a
            name become `_`): NaN when the class is in neither the ground truth
            nor the prediction (0/0); 0.0 when it is only predicted.
        `miou`: the mean of `iou_<name>` over the classes with at least one
            ground-truth pixel (NaN if none has); background is not a class
            and is left out.
        `pixel_accuracy`: correct pixels / non-ignored pixels, background pixels
            included (a background pixel is correct when no instance claims it).

    Args:
        confusion: The (nc + 1, nc + 1) matrix of `confusion_matrix`.
        names: Class names by id.

    Returns:
        The metrics, keys as above.
    """
    nc = len(names)
    if confusion.shape != (nc + 1, nc + 1):
        raise ValueError(
            f"confusion matrix {confusion.shape} does not fit {nc} classes + background"
        )
    matrix = confusion.astype(np.float64)
    tp = np.diag(matrix)[:nc]
    truth = matrix.sum(axis=1)[:nc]
    predicted = matrix.sum(axis=0)[:nc]
    union = truth + predicted - tp
    iou = np.divide(tp, union, out=np.full(nc, np.nan), where=union > 0)
    metrics = {
        metric_key("iou", name): float(v) for name, v in zip(names, iou, strict=True)
    }
    present = truth > 0
    metrics["miou"] = float(iou[present].mean()) if present.any() else math.nan
    total = matrix.sum()
    metrics["pixel_accuracy"] = (
        float(np.trace(matrix) / total) if total > 0 else math.nan
    )
    return metrics


def plot_class_iou(
    metrics: Mapping[str, float], names: Sequence[str], path: Path | str
) -> Path:
    """Writes a bar chart of per-class IoU, with mIoU as a line, to a PNG.

    Rendered with matplotlib's Agg canvas (no display, no pyplot state).

    Args:
        metrics: The output of `semantic_metrics`.
        names: Class names by id.
        path: The PNG to write (its folder is created when missing).

    Returns:
        The PNG's path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = [metrics.get(metric_key("iou", name), math.nan) for name in names]
    figure = Figure(figsize=(min(max(4.0, 0.6 * len(names) + 2), 20.0), 3.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = np.arange(len(names))
    heights = [0.0 if math.isnan(v) else v for v in values]
    bars = axes.bar(positions, heights, color="#3b75af")
    for bar, value in zip(bars, values, strict=True):
        label = "n/a" if math.isnan(value) else f"{value:.2f}"
        axes.annotate(
            label,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    miou = metrics.get("miou", math.nan)
    if not math.isnan(miou):
        axes.axhline(miou, color="#d62728", linestyle="--", label=f"mIoU {miou:.3f}")
        axes.legend(loc="upper right", fontsize=8)
    axes.set_xticks(positions, labels=list(names))
    if len(names) > 6:
        axes.tick_params(axis="x", labelrotation=45)
    axes.set_ylim(0, 1.1)
    axes.set_ylabel("IoU")
    axes.set_title("IoU per class")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def plot_confusion(
    confusion: np.ndarray,
    names: Sequence[str],
    path: Path | str,
    *,
    normalize: bool = True,
) -> Path:
    """Writes the pixel confusion matrix, background last, to a PNG.

    Drawn as the classification task draws its own (rows true, columns
    predicted).

    Args:
        confusion: The (nc + 1, nc + 1) matrix of `confusion_matrix`.
        names: Class names by id.
        path: The PNG to write (its folder is created when missing).
        normalize: Show each true row as fractions of its pixels (pixel counts
            are too long to print in cells).

    Returns:
        The PNG's path.
    """
    matrix = confusion
    title = "Pixel confusion (counts)"
    if normalize:
        rows = confusion.sum(axis=1, keepdims=True).astype(np.float64)
        matrix = np.divide(
            confusion, rows, out=np.zeros(confusion.shape, np.float64), where=rows > 0
        )
        title = "Pixel confusion (normalised per true class)"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _plot_matrix(matrix, [*names, "background"], title, path)
    return path
