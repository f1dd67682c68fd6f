"""The staged-dataset manifest every ingestion stage reads and writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, Field

MANIFEST_FILE = "manifest.json"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# Roboflow names every augmented copy `<source stem>_<ext>.rf.<32 hex>.<ext>`.
_ROBOFLOW_NAME = re.compile(r"^(?P<group>.+)\.rf\.[0-9a-f]{16,}$", re.IGNORECASE)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Item(BaseModel):
    """One image and its YOLO label file inside a staged dataset directory.

    Attributes:
        id: Unique, filesystem-safe identifier; the stem of the staged files.
        image: Path of the image, relative to the dataset directory.
        label: Path of the YOLO txt label, relative to the directory; None when
            the source had no label for this image.
        source: Where the item came from in the source (for reports).
        source_split: The split the source put it in (train/val/test), if any.
        group: Items sharing a group (augmented copies of one photo) are
            always put in the same split.
        class_id: The image-level class of a classification item (its label
            file is then None); None for the other tasks.
    """

    id: str
    image: str
    label: str | None
    source: str
    source_split: str | None = None
    group: str
    class_id: int | None = None


class Manifest(BaseModel):
    """A staged dataset: class names plus the items, in a stable order."""

    source: str
    source_format: str
    class_names: list[str]
    task: str = "detect"
    items: list[Item] = Field(default_factory=list)

    def write(self, root: Path) -> Path:
        """Writes the manifest as `manifest.json` inside `root`."""
        path = root / MANIFEST_FILE
        path.write_text(json.dumps(self.model_dump(), indent=1, sort_keys=True))
        return path

    @classmethod
    def read(cls, root: Path) -> Manifest:
        """Reads `manifest.json` from a staged dataset directory."""
        path = root / MANIFEST_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{root} is not a staged dataset: {MANIFEST_FILE} is missing."
            )
        return cls.model_validate_json(path.read_text())


def group_key(filename: str) -> str:
    """Returns the split group of an image file name.

    Roboflow augmented copies (`photo_jpg.rf.<hash>.jpg`) share the group
    `photo_jpg`; any other file is its own group.
    """
    stem = Path(filename).stem
    match = _ROBOFLOW_NAME.match(stem)
    return match.group("group") if match else stem


def safe_id(relative: str) -> str:
    """Turns a source-relative path into a filesystem-safe, readable item id."""
    stem = str(Path(relative).with_suffix(""))
    return _UNSAFE.sub("_", stem.replace("/", "__")).strip("_") or "item"
