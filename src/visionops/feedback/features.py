"""One image's feature record: what drift compares and prediction records carry.

`Featurizer(task, onnx_path)(image, prediction)` is the one function the batch,
the service's records and the training reference call: the image's size and
look (brightness, contrast, sharpness), the task's figures for its prediction
(`Task.prediction_features`) and the model's own embedding (`engine.embedding`),
projected onto the reference's principal components when one is known.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from visionops.engine.embedding import Embedder
from visionops.engine.task import Task, TaskError

IMAGE_FEATURES = ("width", "height", "brightness", "contrast", "sharpness")
CONFIDENCE = "confidence"  # the image's confidence, every task's features have it
TOP_CLASS = "top_class"  # the categorical one: the class mix
EMBEDDING = "embedding"  # the raw embedding, when no reference projects it
EMBEDDING_PREFIX = "emb_"  # its projection: emb_0, emb_1, ...
RESIDUAL = "emb_residual"  # what the projection misses (novelty reads it)
FIT_SPLIT = "val"  # the reference split the PCA is fitted on
EMBEDDING_DIMS = 32  # components the reference's PCA keeps (at most)
# Brightness, contrast and sharpness are measured on the image shrunk to this
# side, so they cost the same on any image and sharpness does not grow with size.
LOOK_SIDE = 256


def image_features(image_bgr: np.ndarray) -> dict[str, float]:
    """Width, height, brightness and contrast (0-1: grey mean and standard
    deviation) and sharpness (the variance of the Laplacian of the grey image)."""
    height, width = image_bgr.shape[:2]
    scale = LOOK_SIDE / max(height, width)
    small = image_bgr
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return {
        "width": float(width),
        "height": float(height),
        "brightness": float(grey.mean()) / 255,
        "contrast": float(grey.std()) / 255,
        "sharpness": float(cv2.Laplacian(grey, cv2.CV_64F).var()),
    }


@dataclass
class Pca:
    """Principal components fitted on the reference's embeddings (numpy SVD).

    Attributes:
        mean: The reference's mean embedding.
        components: (k, d) unit rows, the directions of most variance first.
    """

    mean: np.ndarray
    components: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray, dims: int) -> Pca:
        """At most `dims` components of (n, d) rows (and fewer than n)."""
        mean = rows.mean(axis=0)
        _, _, vt = np.linalg.svd(rows - mean, full_matrices=False)
        keep = max(1, min(dims, rows.shape[0] - 1, rows.shape[1]))
        return cls(mean.astype(np.float32), vt[:keep].astype(np.float32))

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """(n, d) embeddings -> (n, k) components."""
        return (np.asarray(rows, np.float32) - self.mean) @ self.components.T

    def residual(self, rows: np.ndarray) -> np.ndarray:
        """(n,) what the components miss of each embedding (the reconstruction
        error's norm): large for an image unlike those the PCA was fitted on."""
        centred = np.asarray(rows, np.float32) - self.mean
        kept = (centred @ self.components.T) @ self.components
        return np.linalg.norm(centred - kept, axis=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"mean": self.mean.tolist(), "components": self.components.tolist()}

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> Pca:
        """What `to_dict` wrote."""
        return cls(
            np.asarray(body["mean"], np.float32),
            np.asarray(body["components"], np.float32),
        )


def embedding_columns(count: int) -> list[str]:
    """`emb_0` ... the projected embedding's columns (not `emb_residual`)."""
    return [f"{EMBEDDING_PREFIX}{i}" for i in range(count)]


def project(row: Mapping[str, Any], pca: Pca) -> dict[str, Any]:
    """A feature record with its raw `embedding` replaced by its components
    (a record already projected stays as it is)."""
    if EMBEDDING not in row:
        return dict(row)
    out = {k: v for k, v in row.items() if k != EMBEDDING}
    raw = np.asarray([row[EMBEDDING]], np.float32)
    values = pca.transform(raw)[0]
    out.update(zip(embedding_columns(len(values)), values.tolist(), strict=True))
    out[RESIDUAL] = float(pca.residual(raw)[0])
    return out


class Featurizer:
    """Feature records of one model's predictions (`__call__`).

    Attributes:
        task: The model's task.
        predictor: Its ONNX predictor (the blob it feeds is what is embedded).
        names: Class names by index.
        pca: The reference's components; None: records keep the raw embedding.
    """

    def __init__(
        self,
        task: Task,
        onnx_path: Path,
        *,
        predictor: Any = None,
        pca: Pca | None = None,
        threads: int = 1,
    ) -> None:
        """Opens the model's embedding graph (and its predictor if none given)."""
        self.task = task
        self.predictor = predictor or task.predictor(onnx_path, threads=threads)
        self.names = dict(self.predictor.names)
        self.embedder = Embedder(onnx_path, threads=threads)
        self.pca = pca

    def __call__(self, image_bgr: np.ndarray, prediction: Any) -> dict[str, Any]:
        """One image's feature record: image, prediction and embedding features.

        Args:
            image_bgr: The decoded image (uint8 BGR).
            prediction: What the task's predictor answered for it.

        Returns:
            JSON-ready: `IMAGE_FEATURES`, the task's figures (`confidence`,
            `top_class`, ...), and `emb_<i>` (with a reference) or `embedding`.
        """
        record: dict[str, Any] = image_features(image_bgr)
        # A task without figures still has its image's.
        with contextlib.suppress(TaskError):
            record.update(self.task.prediction_features(prediction, self.names))
        vector = self.embedder.embed([self.predictor.preprocess(image_bgr)])[0]
        record[EMBEDDING] = [round(float(v), 6) for v in vector]
        return project(record, self.pca) if self.pca is not None else record


@dataclass
class Reference:
    """The champion's feature records on its val and test splits, and its PCA.

    Stored with the model version (`reference.json` in its MLflow run), so a
    drift report never needs the training data.

    Attributes:
        task: The task's name.
        class_names: The model's classes.
        pca: Fitted on the val rows' raw embeddings.
        rows: Feature records (projected), each with its `split`.
        model: What the model is (name, version, run), when known.
        novelty_scale: The test images' median distance to the val images
            (`distance`): what `novelty` divides by.
    """

    task: str
    class_names: list[str]
    pca: Pca
    rows: list[dict[str, Any]]
    model: dict[str, Any] = field(default_factory=dict)
    novelty_scale: float = 1.0

    def low_confidence_share(
        self, threshold: float, split: str = "test"
    ) -> tuple[float, int]:
        """The share of the split's images whose confidence is below `threshold`,
        and how many images it is measured on."""
        values = [
            r[CONFIDENCE]
            for r in self.rows
            if r.get("split") == split and CONFIDENCE in r
        ]
        values = values or [r[CONFIDENCE] for r in self.rows if CONFIDENCE in r]
        if not values:
            return 0.0, 0
        return sum(v < threshold for v in values) / len(values), len(values)

    def embeddings(self) -> np.ndarray:
        """The rows' projected embeddings, (n, k)."""
        columns = embedding_columns(self.pca.components.shape[0])
        return np.asarray([[r[c] for c in columns] for r in self.rows], np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "task": self.task,
            "class_names": self.class_names,
            "model": self.model,
            "pca": self.pca.to_dict(),
            "novelty_scale": self.novelty_scale,
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> Reference:
        """What `to_dict` wrote."""
        return cls(
            body["task"],
            list(body["class_names"]),
            Pca.from_dict(body["pca"]),
            list(body["rows"]),
            dict(body.get("model") or {}),
            float(body.get("novelty_scale") or 1.0),
        )

    def distance(self, features: Mapping[str, Any], split: str = FIT_SPLIT) -> float:
        """An image's distance to the nearest `split` image: in the components,
        and what they miss (`emb_residual`), together."""
        row = project(features, self.pca)
        columns = embedding_columns(self.pca.components.shape[0])
        points = np.asarray(
            [[r[c] for c in columns] for r in self.rows if r.get("split") == split]
            or [[r[c] for c in columns] for r in self.rows],
            np.float32,
        )
        vector = np.asarray([row[c] for c in columns], np.float32)
        nearest = float(np.linalg.norm(points - vector, axis=1).min())
        return math.hypot(nearest, float(row.get(RESIDUAL, 0.0)))


def novelty(features: Mapping[str, Any], reference: Reference) -> float:
    """How far an image's embedding lies from the images the model was checked on.

    Its distance to the nearest val image (`Reference.distance`) over the test
    images' median one: about 1 for an image like the test split's, several
    for an image of another kind. A selection policy's score.

    Args:
        features: The image's feature record (`Featurizer`), raw or projected.
        reference: The model's reference.
    """
    return reference.distance(features) / reference.novelty_scale


def build_reference(
    featurizer: Featurizer,
    split_images: Mapping[str, Sequence[Path]],
    dims: int,
    *,
    model: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, Any] | None = None,
) -> Reference:
    """The model's feature records on each split's images, with a PCA fitted on them.

    Args:
        featurizer: The model's featurizer (no PCA yet).
        split_images: Images by split (`val`, `test`).
        dims: The PCA's components (at most).
        model: What the model is, recorded.
        thresholds: The prediction thresholds (the task's defaults when None).

    Raises:
        ValueError: No image could be read.
    """
    from visionops.core import images

    raw: list[dict[str, Any]] = []
    for split, paths in split_images.items():
        for path in paths:
            try:
                image = images.read(path)
            except images.ImageError:
                continue
            prediction = featurizer.task.predict(
                featurizer.predictor, [image], **(thresholds or {})
            )[0]
            raw.append({"split": split, **featurizer(image, prediction)})
    if not raw:
        raise ValueError("no readable image in the reference splits")
    # Fitted on val alone, so the test images are as unseen by it as new ones.
    fit = [r for r in raw if r["split"] == FIT_SPLIT] or raw
    pca = Pca.fit(np.asarray([r[EMBEDDING] for r in fit], np.float32), dims)
    names = [featurizer.names[i] for i in sorted(featurizer.names)]
    reference = Reference(
        featurizer.task.name,
        names,
        pca,
        [project(r, pca) for r in raw],
        dict(model or {}),
    )
    held_out = [r for r in reference.rows if r["split"] != FIT_SPLIT]
    if held_out and len(fit) < len(raw):
        scale = float(np.median([reference.distance(r) for r in held_out]))
        reference.novelty_scale = scale if scale > 0 else 1.0
    return reference
