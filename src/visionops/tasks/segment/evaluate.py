"""Segmentation test evaluation: Ultralytics box and mask mAP, then IoU per class."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visionops.data.masks import BACKGROUND
from visionops.engine.bootstrap import PerImage
from visionops.engine.report import EvalReport
from visionops.engine.task import Scores
from visionops.engine.ultralytics import load_model, predict, validate
from visionops.tasks.classify.metrics import metric_key
from visionops.tasks.detect.resample import STAT_FIELDS, collect_stats
from visionops.tasks.segment.metrics import (
    SemanticAccumulator,
    confusion_matrix,
    plot_class_iou,
    plot_confusion,
    rasterise_instances,
    semantic_metrics,
)

if TYPE_CHECKING:
    from visionops.engine.task import EvalJob

# The pictures of the semantic evaluation, beside Ultralytics' own plots.
IOU_PLOT = "class_iou.png"
PIXEL_CONFUSION_PLOT = "pixel_confusion_matrix.png"
NOT_AVAILABLE = "n/a"


def measure(job: EvalJob) -> Scores:
    """Scores the job's weights on one split of a segmentation dataset.

    Instance metrics come from Ultralytics' validation (box and mask mAP50 and
    mAP50-95; its plots land in `job.out_dir`). Semantic metrics come from
    Ultralytics' `predict` on every image of the split at the original
    resolution (`retina_masks=True`, as `OnnxSegmenter` gives them) with its
    default confidence threshold, as served: the predicted instances become one
    class map per image (`rasterise_instances`: the most confident instance wins
    a pixel, unclaimed pixels are background), compared with the ground truth of
    the layout (`layout.class_map`: the source's mask, else the polygons):
    `iou_<class>`, `miou` over the classes present in the ground truth and
    `pixel_accuracy`, plus a per-class IoU bar chart and the pixel confusion
    matrix as PNGs in `job.out_dir`.

    An undefined value (a class neither in the ground truth nor predicted, so
    IoU is 0/0) is left out of the metrics, which must be numbers to be
    tracked, compared and stored; its per-class row says `n/a`.

    Raises:
        ValueError: A predicted mask and its ground truth differ in size.
    """
    model = load_model(job)
    matches = collect_stats(model, ("tp", "tp_m"))  # per image, for the bootstrap
    names, instance, per_class_ap = instance_metrics(validate(job, model))
    dataset, out_dir = job.dataset, job.out_dir
    accumulator = SemanticAccumulator(names)
    pixels: dict[str, list[float]] = {}  # per image, for the bootstrap
    for image, result in zip(job.images, predict(job, retina_masks=True), strict=True):
        predicted = result_class_map(result)
        truth = job.task.layout.class_map(dataset.root, image)
        if predicted.shape != truth.shape:
            raise ValueError(
                f"{image.name}: the prediction is {predicted.shape[::-1]} pixels, "
                f"its ground truth {truth.shape[::-1]}"
            )
        confusion = confusion_matrix(predicted, truth, len(names))
        accumulator.confusion += confusion
        pixels[image.name] = confusion.ravel().tolist()
    semantic = semantic_metrics(accumulator.confusion, names)
    plot_class_iou(semantic, names, out_dir / IOU_PLOT)
    plot_confusion(accumulator.confusion, names, out_dir / PIXEL_CONFUSION_PLOT)
    metrics = {**instance, **semantic}
    return Scores(
        metrics={k: v for k, v in metrics.items() if math.isfinite(v)},
        class_names=names,
        per_class=per_class_rows(names, semantic, per_class_ap),
        confusion_matrix=_normalised(accumulator.confusion).round(4).tolist(),
        per_image=per_image_results(matches, pixels),
    )


def per_image_results(matches: list[dict], pixels: dict[str, list[float]]) -> PerImage:
    """Ultralytics' box and mask matches and the pixel confusion of each image
    (the images both hold), from which `segment_metric` recomputes the metrics."""
    by_name = {m["im_name"]: m for m in matches}
    names = [name for name in pixels if name in by_name]
    fields = ("tp", "tp_m", *STAT_FIELDS)
    values = {f: [by_name[name][f] for name in names] for f in fields}
    return PerImage(
        images=names, values={**values, "confusion": [pixels[n] for n in names]}
    )


def instance_metrics(
    results: Any,
) -> tuple[list[str], dict[str, float], dict[str, dict[str, float]]]:
    """Ultralytics' validation results of a segmentation model, by the project's names.

    Returns:
        The class names, `{mask,box}_map50{,_95}`, per class (by name, for
        the classes with ground truth) `mask_ap50`, `mask_ap50_95` and
        `box_ap50_95`.
    """
    names = [str(results.names[i]) for i in sorted(results.names)]
    box, seg = results.box, results.seg
    metrics = {
        "mask_map50_95": float(seg.map),
        "mask_map50": float(seg.map50),
        "box_map50_95": float(box.map),
        "box_map50": float(box.map50),
    }
    per_class: dict[str, dict[str, float]] = {}
    for i, cls in enumerate(seg.ap_class_index):
        _, _, mask_ap50, mask_ap = seg.class_result(i)
        per_class[names[int(cls)]] = {
            "mask_ap50": float(mask_ap50),
            "mask_ap50_95": float(mask_ap),
            "box_ap50_95": float(box.class_result(i)[3]),
        }
    return names, metrics, per_class


def result_class_map(result: Any) -> np.ndarray:
    """The class map of one Ultralytics segment `Results` (most confident wins)."""
    shape = tuple(int(v) for v in result.orig_shape[:2])
    if result.masks is None:  # Ultralytics: no instance
        return np.full(shape, BACKGROUND, np.int32)
    masks = result.masks.data.cpu().numpy() > 0.5
    return rasterise_instances(
        shape,
        result.boxes.cls.cpu().numpy().astype(np.int64),
        result.boxes.conf.cpu().numpy(),
        masks=masks,
    )


def per_class_rows(
    names: Sequence[str],
    semantic: dict[str, float],
    per_class_ap: dict[str, dict[str, float]],
) -> list[dict[str, float | str]]:
    """One row per class: its IoU and, where it has ground truth, its AP."""
    rows: list[dict[str, float | str]] = []
    for name in names:
        iou = semantic.get(metric_key("iou", name), math.nan)
        ap = per_class_ap.get(name, {})
        rows.append(
            {
                "class": name,
                "iou": NOT_AVAILABLE if math.isnan(iou) else iou,
                **{
                    key: ap.get(key, NOT_AVAILABLE)
                    for key in ("mask_ap50", "mask_ap50_95", "box_ap50_95")
                },
            }
        )
    return rows


def _normalised(confusion: np.ndarray) -> np.ndarray:
    """The pixel confusion matrix as fractions of each true class's pixels."""
    rows = confusion.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(
        confusion, rows, out=np.zeros(confusion.shape, np.float64), where=rows > 0
    )


def evaluation_html(
    report: EvalReport, plot_dir: Path, label: Callable[[str], str] = str
) -> str:
    """The shared evaluation page (metrics shown by `label`) plus the IoU chart and
    the pixel confusion."""
    from visionops.engine.task import evaluation_html as shared_html

    page = shared_html(report, plot_dir, label)
    sections = ""
    for title, name in (
        ("IoU per class", IOU_PLOT),
        ("Pixel confusion matrix (background last)", PIXEL_CONFUSION_PLOT),
    ):
        path = plot_dir / name
        if path.is_file():
            data = base64.b64encode(path.read_bytes()).decode()
            sections += (
                f'<h3>{title}</h3><img style="max-width:640px" '
                f'src="data:image/png;base64,{data}">'
            )
    return page.replace("</body></html>", f"{sections}</body></html>")
