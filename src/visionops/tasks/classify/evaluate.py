"""Classification test evaluation: `.pt` probabilities over a split, scored."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visionops.core.files import sha256_file
from visionops.engine.bootstrap import PerImage
from visionops.engine.report import EvalReport
from visionops.engine.ultralytics import configure_ultralytics, resolve_device

if TYPE_CHECKING:
    from visionops.data.version import DatasetVersion


def predict_probabilities(
    weights: Path,
    images: list[Path],
    *,
    imgsz: int,
    batch: int = 8,
    device: str = "auto",
) -> tuple[list[str], np.ndarray]:
    """Class names and (n, C) probabilities of Ultralytics' `predict` per image."""
    from ultralytics import YOLO

    configure_ultralytics()
    model = YOLO(str(weights), task="classify")
    names = [str(model.names[i]) for i in sorted(model.names)]
    rows: list[np.ndarray] = []
    for start in range(0, len(images), batch):
        chunk = [str(p) for p in images[start : start + batch]]
        for result in model.predict(
            chunk, imgsz=imgsz, device=resolve_device(device), verbose=False
        ):
            rows.append(_probabilities(result))
    return names, np.stack(rows) if rows else np.zeros((0, len(names)))


def _probabilities(result: Any) -> np.ndarray:
    """The class probabilities of one Ultralytics classify `Results`."""
    return result.probs.data.float().cpu().numpy()


def evaluate_weights(
    weights: Path,
    dataset: DatasetVersion,
    out_dir: Path,
    *,
    imgsz: int,
    batch: int = 8,
    device: str = "auto",
    split: str = "test",
    positive_class: str | None = None,
) -> EvalReport:
    """Scores `weights` on one split of a classification dataset.

    The true class of an image comes from the dataset's layout (its class folder,
    `<split>/<class>/<image>`). The confusion matrices (counts and normalised
    per true class) are written to `out_dir` as PNGs.

    Raises:
        ValueError: The split is empty, or holds a class the model does not know.
    """
    from visionops.tasks.classify.metrics import (
        classification_metrics,
        save_confusion_matrices,
    )

    images = dataset.split_images(split)
    if not images:
        raise ValueError(
            f"The dataset has no {split} split ({dataset.root}); re-run ingestion "
            f"with split.{split} > 0 so models are measured on images they never saw."
        )
    names, probs = predict_probabilities(
        weights, images, imgsz=imgsz, batch=batch, device=device
    )
    index = {name: i for i, name in enumerate(names)}
    truth = [str(dataset.layout.image_class(dataset.root, p)) for p in images]
    unknown = sorted(set(truth) - set(index))
    if unknown:
        raise ValueError(
            f"The {split} split holds classes {unknown} the model does not know "
            f"({names}); train on this dataset version first."
        )
    labels = np.array([index[name] for name in truth], dtype=np.int64)
    result = classification_metrics(labels, probs, names, positive_class=positive_class)
    save_confusion_matrices(result, out_dir)
    return EvalReport(
        task="classify",
        split=split,
        dataset_hash=dataset.hash,
        weights_sha256=sha256_file(weights),
        imgsz=imgsz,
        images=len(images),
        metrics=result.metrics,
        per_class=result.per_class,
        class_names=names,
        confusion_matrix=result.confusion_normalized.round(4).tolist(),
        per_image=PerImage(
            images=[p.name for p in images],
            values={"label": [[int(v)] for v in labels], "probs": probs.tolist()},
            params={"positive_class": positive_class} if positive_class else {},
        ),
    )
