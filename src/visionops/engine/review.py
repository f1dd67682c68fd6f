"""A labelling batch as every task writes it: pre-labels in the dataset's format."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLASSES_TXT = "classes.txt"  # what Label Studio's YOLO import reads the names from


@dataclass(frozen=True)
class PreLabel:
    """One predicted object or class, offered to a labeller to correct.

    Attributes:
        class_name: The predicted class.
        confidence: The model's confidence (a classifier's probability).
        class_id: The class's id in the model that predicted it.
        box: `(x1, y1, x2, y2)` in pixels of the image, for an object.
        polygon: `((x, y), ...)` in pixels, for an object's outline.
    """

    class_name: str
    confidence: float
    class_id: int | None = None
    box: tuple[float, float, float, float] | None = None
    polygon: tuple[tuple[float, float], ...] | None = None


class ReviewExport(ABC):
    """A task's labelling batch: images and pre-labels in the dataset's own
    format, which the ingestion sources read back as they are.

    One instance per batch (`Task.review_export`): `add` each image, then
    `finish`.

    Attributes:
        root: The batch folder.
        class_names: The classes by id (the model's, in id order, then any
            other class a pre-label names).
    """

    def __init__(self, root: Path, class_names: Sequence[str]) -> None:
        """Keeps where the batch goes and the class names."""
        self.root = root
        self.class_names = list(class_names)

    @classmethod
    @abstractmethod
    def prelabels(cls, predictions: Mapping[str, Any]) -> list[PreLabel]:
        """The pre-labels in the task's answer for one image (what its endpoint
        returned)."""

    @abstractmethod
    def add(
        self,
        image: Path,
        name: str,
        prelabels: Sequence[PreLabel],
        size: tuple[int, int],
    ) -> Path:
        """Places one image and its pre-labels in the batch.

        Args:
            image: The stored image.
            name: Its file name in the batch.
            prelabels: What `prelabels` gave for it.
            size: Its (width, height) in pixels.

        Returns:
            The image's path in the batch.
        """

    def finish(self) -> None:  # noqa: B027  (a class-folder batch needs nothing)
        """Writes what describes the whole batch (the class names)."""

    def class_id(self, name: str) -> int:
        """The id of a class name in `class_names`."""
        return self.class_names.index(name)


def normalised(x: float, y: float, size: tuple[int, int]) -> tuple[float, float]:
    """A pixel point as a fraction of the image's width and height, within 0..1."""
    width, height = size
    return min(max(x / width, 0.0), 1.0), min(max(y / height, 0.0), 1.0)
