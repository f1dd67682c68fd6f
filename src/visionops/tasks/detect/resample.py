"""Detection metrics per image: Ultralytics' matches kept, AP on any resample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from visionops.engine.bootstrap import MetricFn, PerImage, counts, per_resample

IOU_THRESHOLDS = 10  # Ultralytics' 0.50:0.05:0.95
# Ultralytics' `compute_ap`: 101-point interpolation (COCO).
AP_X = np.linspace(0, 1, 101)
_TRAPZ = getattr(np, "trapezoid", None) or np.trapz
# Resamples one vectorised pass of `_class_ap` holds.
_PASS = 8
# The fields Ultralytics' validator passes `update_stats` per image.
STAT_FIELDS = ("conf", "pred_cls", "target_cls")


def collect_stats(model: Any, tp_fields: Sequence[str] = ("tp",)) -> list[dict]:
    """Keeps what Ultralytics' validation of `model` matches per image.

    The validator hands each image's matches (`tp`: (k, 10) true positives at
    IoU 0.50:0.95, `conf`, `pred_cls`, `target_cls`, `im_name`; segmentation
    adds `tp_m`) to `metrics.update_stats`, then drops them once it has the
    mAP; a callback wraps that method to keep a copy.

    Returns:
        The list `model.val()` fills, one dict per image: `im_name`, the
        `tp_fields` as 10-bit masks, and `STAT_FIELDS`.
    """
    records: list[dict] = []

    def keep(validator: Any) -> None:
        update = validator.metrics.update_stats

        def update_stats(stat: dict[str, Any]) -> None:
            records.append(
                {
                    "im_name": str(stat["im_name"]),
                    **{f: tp_bits(stat[f]) for f in tp_fields},
                    **{f: np.asarray(stat[f]).ravel().tolist() for f in STAT_FIELDS},
                }
            )
            update(stat)

        validator.metrics.update_stats = update_stats

    model.add_callback("on_val_start", keep)
    return records


def tp_bits(tp: Any) -> list[int]:
    """(k, 10) booleans -> k ints, bit t set when the match holds at threshold t."""
    array = np.asarray(tp, dtype=np.int64).reshape(-1, IOU_THRESHOLDS)
    return (array << np.arange(IOU_THRESHOLDS)).sum(axis=1).tolist()


def unpack_bits(bits: np.ndarray) -> np.ndarray:
    """The inverse of `tp_bits`: (k,) ints -> (k, 10) 0/1."""
    return (bits.astype(np.int64)[:, None] >> np.arange(IOU_THRESHOLDS)) & 1


def per_image(records: list[dict], fields: Sequence[str]) -> PerImage:
    """`collect_stats`' records as the evaluation's `PerImage`."""
    return PerImage(
        images=[r["im_name"] for r in records],
        values={f: [r[f] for r in records] for f in fields},
    )


class Matches:
    """Every image's matched predictions, sorted by class then confidence.

    Attributes:
        tp: (N, 10) true positive at each IoU threshold.
        conf: (N,) confidences; cls: (N,) predicted classes; image: (N,) images.
        targets: (n_images, classes) ground-truth boxes per image and class.
    """

    def __init__(self, results: PerImage, field: str = "tp") -> None:
        """Concatenates the images' matches of `field` (`tp` or `tp_m`)."""
        confs = results.arrays("conf")
        n = len(confs)
        sizes = [len(c) for c in confs]
        conf = np.concatenate(confs) if n else np.zeros(0)
        cls = np.concatenate(results.arrays("pred_cls", np.int64) or [np.zeros(0)])
        bits = np.concatenate(results.arrays(field, np.int64) or [np.zeros(0)])
        targets = results.arrays("target_cls", np.int64)
        target_cls = np.concatenate(targets or [np.zeros(0, np.int64)])
        cls = cls.astype(np.int64)
        self.classes = int(max(cls.max(initial=-1), target_cls.max(initial=-1))) + 1
        image = np.repeat(np.arange(n), sizes)
        order = np.lexsort((-conf, cls))  # by class, then confidence descending
        self.tp = unpack_bits(bits[order])
        self.conf = conf[order]
        self.cls = cls[order].astype(np.int64)
        self.image = image[order]
        self.targets = np.zeros((n, self.classes), np.int64)
        np.add.at(
            self.targets,
            (np.repeat(np.arange(n), [len(t) for t in targets]), target_cls),
            1,
        )
        self.target_cls = target_cls
        self.target_image = np.repeat(np.arange(n), [len(t) for t in targets])

    def average_precision(
        self, indices: np.ndarray, thresholds: int = IOU_THRESHOLDS
    ) -> tuple[np.ndarray, np.ndarray]:
        """AP per class and IoU threshold on each resample, as `ap_per_class`
        computes it on the resample's images concatenated.

        An image drawn w times repeats its predictions w times in a row of the
        sorted list; where the k-th copy of every image sits follows from
        cumulative counts, so the curves are never built: `compute_ap` reads
        the precision envelope at 101 recall levels only, each one between the
        points just before and at the m-th true positive.

        Args:
            indices: (R, n) image indices, a resample a row.
            thresholds: The first IoU thresholds to compute (1: AP50 only).

        Returns:
            (R, classes, thresholds) AP, and (R, classes) whether the class has
            a target in the resample (the classes mAP averages over).
        """
        w = counts(indices, self.targets.shape[0])
        labels = w @ self.targets
        copies = w[:, self.image]
        ap = np.zeros((len(w), self.classes, thresholds))
        for c in range(self.classes):
            rows = self.cls == c
            if not rows.any():
                continue
            for i in range(0, len(w), _PASS):  # a few MB at a time: cache-sized
                ap[i : i + _PASS, c] = _class_ap(
                    copies[i : i + _PASS, rows],
                    self.tp[rows, :thresholds],
                    labels[i : i + _PASS, c],
                )
        return ap, labels > 0

    def ultralytics(self, indices: np.ndarray) -> tuple:
        """`ap_per_class` on one resample's images concatenated (the reference)."""
        from ultralytics.utils.metrics import ap_per_class

        w = np.bincount(indices, minlength=self.targets.shape[0])
        pred = np.repeat(np.arange(len(self.image)), w[self.image])
        target = np.repeat(np.arange(len(self.target_cls)), w[self.target_image])
        return ap_per_class(
            self.tp[pred].astype(bool),
            self.conf[pred],
            self.cls[pred],
            self.target_cls[target],
        )


def _class_ap(copies: np.ndarray, tp: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(R, 10) AP of one class from its sorted predictions' copies per resample.

    Args:
        copies: (R, n) times each prediction appears in each resample.
        tp: (n, 10) whether it is a true positive at each IoU threshold.
        labels: (R,) targets of the class in each resample.
    """
    rows = len(copies)
    copies = copies.astype(np.int32)
    seen = copies.cumsum(axis=1)[:, None, :]  # (R, 1, n) points so far
    # A prediction false at every threshold only moves the later points: past
    # the first true positive its precision never tops the envelope.
    keep = tp.any(axis=1)
    if not keep.any():
        return np.zeros((rows, tp.shape[1]))
    copies, tp, seen = copies[:, keep], tp[keep], seen[:, :, keep]
    n = len(tp)
    hits = (copies[:, None, :] * tp.T.astype(np.int32)[None]).cumsum(axis=2)
    precision = hits / np.maximum(seen, 1)  # (R, 10, n); 0 before the first point
    envelope = np.maximum.accumulate(precision[:, :, ::-1], axis=2)[:, :, ::-1]
    false = seen - hits
    # The m-th true positive gives the recall level AP_X[k] its interval:
    # m - 1 = how many m' have m' / labels <= AP_X[k] (compared as floats).
    level = np.floor(AP_X * labels[:, None]).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        level += (level + 1) / labels[:, None] <= AP_X
        level -= (level >= 1) & (level / labels[:, None] > AP_X)
    m = level[:, None, :] + 1  # (R, 1, 101)
    flat = hits.reshape(-1, n)
    offset = (np.arange(len(flat)) * (int(flat.max(initial=0)) + 2))[:, None]
    at = np.searchsorted(
        (flat + offset).ravel(),
        (
            offset
            + m.reshape(rows, 1, -1).repeat(tp.shape[1], 1).reshape(len(flat), -1)
        ).ravel(),
    )
    at = at.reshape(len(flat), -1) - np.arange(len(flat))[:, None] * n
    found = at < n
    at = np.minimum(at, n - 1)
    m = np.broadcast_to(m, (rows, tp.shape[1], len(AP_X))).reshape(len(flat), -1)
    after = np.take_along_axis(envelope.reshape(-1, n), at, 1)
    position = m + np.take_along_axis(false.reshape(-1, n), at, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        before = np.where(position > 1, (m - 1) / (position - 1), 1.0)
        before = np.maximum(before, after)
        total = np.repeat(labels, tp.shape[1])[:, None]
        x0, x1 = (m - 1) / total, m / total
        value = (after - before) / (x1 - x0) * (AP_X - x0) + before
    value = np.where(x0 == AP_X, before, value)
    value = np.where(found, value, 0.0)
    return _TRAPZ(value, AP_X, axis=1).reshape(rows, tp.shape[1])


def map_metric(results: PerImage, field: str, iou50_only: bool) -> MetricFn:
    """mAP50-95 (or mAP50) of `field`'s matches on resamples, vectorised."""
    matches = Matches(results, field)

    def metric(indices: np.ndarray) -> np.ndarray:
        ap, present = matches.average_precision(
            indices, 1 if iou50_only else IOU_THRESHOLDS
        )
        # A class predicted but absent from the resample is left out (its AP,
        # over no target, is undefined), as `ap_per_class` leaves it out.
        per_class = np.where(present, ap.mean(axis=2), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return per_class.sum(axis=1) / present.sum(axis=1)

    return metric


def detection_metric(
    results: PerImage, metric: str, class_names: Sequence[str]
) -> MetricFn:
    """The detect task's five test metrics on resamples of the test images.

    mAP50-95 and mAP50 are vectorised (`Matches.average_precision`);
    precision, recall and F1 (at Ultralytics' best mean-F1 confidence) call
    `ap_per_class` once per resample.

    Raises:
        ValueError: Not one of the five.
    """
    if metric in ("map50_95", "map50"):
        return map_metric(results, "tp", iou50_only=metric == "map50")
    if metric not in ("precision", "recall", "f1"):
        raise ValueError(f"{metric!r} is not a detection metric")
    matches = Matches(results)

    def one(indices: np.ndarray) -> float:
        p, r = (float(v.mean()) for v in matches.ultralytics(indices)[2:4])
        values = {
            "precision": p,
            "recall": r,
            "f1": 2 * p * r / (p + r) if p + r else 0.0,
        }
        return values[metric]

    return per_resample(one)
