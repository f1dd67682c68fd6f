"""The staged-dataset manifest every ingestion stage reads and writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, Field

MANIFEST_FILE = "manifest.json"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# What a source's labels are, whatever the task they end up serving: the
# tasks say which kinds their datasets hold (`Task.label_kinds`).
IMAGE_CLASS = "image-level classes"
BOXES = "boxes or polygons"
POLYGONS = "polygons"
MASKS = "segmentation masks"

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
        mask: Path of the item's mask image (a PNG of class indices), relative
            to the directory; only segmentation items from mask sources have
            one. Validation turns it into the polygon label.
        problem: `<reason>: <detail>` when staging did not read the item's
            files (a link out of the export, a dangling link); validation
            quarantines the item for that reason.
    """

    id: str
    image: str
    label: str | None
    source: str
    source_split: str | None = None
    group: str
    class_id: int | None = None
    mask: str | None = None
    problem: str | None = None


class Manifest(BaseModel):
    """A staged dataset: class names plus the items, in a stable order.

    Attributes:
        task: The name of the task the dataset is staged for; None until a
            task is chosen (see `visionops.data.sources.stage_source`).
        kind: What the source's labels are (`BOXES`, `POLYGONS`, `MASKS`,
            `IMAGE_CLASS`).
        mask_ignore: The mask value of pixels excluded from training and
            evaluation (masks only).
        mask_background: The mask value of pixels that are no object, if the
            masks have one (masks only).
    """

    source: str
    source_format: str
    class_names: list[str]
    task: str | None = None
    kind: str = BOXES
    mask_ignore: int | None = None
    mask_background: int | None = None
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


def group_key(filename: str, group_by: str | None = None) -> str:
    """Returns the split group of an image file name.

    With `group_by`, a regular expression searched in the file name, its match
    names the group (`person\\d+` puts every X-ray of one patient together);
    a name it does not match is its own group. Without it, Roboflow augmented
    copies (`photo_jpg.rf.<hash>.jpg`) share the group `photo_jpg` and any
    other file is its own group.
    """
    name = Path(filename).name
    if group_by:
        match = re.search(group_by, name)
        if match and match.group(0):
            return match.group(0)
        return Path(name).stem
    stem = Path(name).stem
    match = _ROBOFLOW_NAME.match(stem)
    return match.group("group") if match else stem


def safe_id(relative: str) -> str:
    """Turns a source-relative path into a filesystem-safe, readable item id.

    The id never starts with a dot: Ultralytics skips hidden files, so an item
    named `.x` would be accepted here and never trained on.
    """
    parts = [part for part in Path(relative).with_suffix("").parts if part != ".."]
    stem = "__".join(part for part in parts if part not in ("/", "."))
    return _UNSAFE.sub("_", stem).strip("_.") or "item"
