"""Semantic-segmentation exports: a PNG of class indices per image, a class list."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from visionops.data.manifest import MASKS, Manifest
from visionops.data.sources.base import (
    Entry,
    SourceError,
    list_images,
    relative_to,
    split_from_path,
    write_staged,
)
from visionops.data.sources.yolo import read_classes_txt, read_names

# The class list beside the masks, in the order they are looked for.
CLASS_FILES = ("classes.json", "classes.yaml", "classes.yml", "classes.txt")
# Folders that hold the masks of the `images/` folder beside them.
MASK_DIRS = ("masks", "annotations", "SegmentationClass")
IMAGE_DIRS = ("images", "JPEGImages")
DEFAULT_IGNORE = 255
# Versioned masks keep these two values free for ignore and background.
MAX_CLASSES = 254
_SPLIT_DIRS = ("train", "valid", "val", "test")


@dataclass(frozen=True)
class MaskClasses:
    """What the class file says about the mask values.

    Attributes:
        names: Class names; mask value `v` is class `names[v]`.
        ignore: The value of pixels left out of training and evaluation.
        background: The value of pixels that are no object, if any.
    """

    names: list[str]
    ignore: int | None = DEFAULT_IGNORE
    background: int | None = None


def _pairs(folder: Path) -> list[tuple[Path, Path]]:
    """(images folder, masks folder) pairs directly inside `folder`."""
    pairs = []
    for image_name in IMAGE_DIRS:
        images = folder / image_name
        if not images.is_dir():
            continue
        for mask_name in MASK_DIRS:
            masks = folder / mask_name
            if masks.is_dir() and any(masks.rglob("*.png")):
                pairs.append((images, masks))
                break
    return pairs


def find_mask_folders(root: Path) -> list[tuple[Path, Path]]:
    """Finds `images/` + `masks/` folders in `root` or in its split folders.

    Returns:
        (images folder, masks folder) pairs; empty when `root` has none.
    """
    pairs = _pairs(root)
    for name in _SPLIT_DIRS:
        if (root / name).is_dir():
            pairs += _pairs(root / name)
    return pairs


def find_class_file(root: Path, pairs: list[tuple[Path, Path]]) -> Path | None:
    """The class list of a mask export: in `root`, else beside or in the masks."""
    folders = [root, *{masks.parent for _, masks in pairs}, *(m for _, m in pairs)]
    for folder in folders:
        for name in CLASS_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def _value(raw: Any, names: list[str], key: str, where: Path) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, str) and raw in names:
        return names.index(raw)
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    raise SourceError(
        f"{where}: {key} is {raw!r}; give a mask value (an integer >= 0), a class "
        "name, or null."
    )


def read_mask_classes(path: Path) -> MaskClasses:
    """Reads a class file: a list, an {index: name} mapping, or both plus values.

    `classes.txt` has one name per line. A JSON/YAML file holds a list of
    names, an `{index: name}` mapping (indices 0..n-1), or an object with
    `classes` (or `names`) as either, and optionally `ignore` (default 255,
    null for none) and `background` (a value or a class name). Without
    `background`, a class named `background` is the no-object value.

    Raises:
        SourceError: When the file cannot be read or does not say the above.
    """
    if path.suffix == ".txt":
        names, data = read_classes_txt(path), {}
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
            doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise SourceError(f"Cannot read {path}: {exc}. Fix its syntax.") from None
        if isinstance(doc, dict) and ("classes" in doc or "names" in doc):
            data = doc
            listed = doc.get("classes", doc.get("names"))
        else:
            data, listed = {}, doc
        names = read_names({"names": listed}, path)
    if len(names) > MAX_CLASSES:
        raise SourceError(
            f"{path} lists {len(names)} classes; mask datasets take at most "
            f"{MAX_CLASSES}."
        )
    ignore = _value(data.get("ignore", DEFAULT_IGNORE), names, "ignore", path)
    lowered = [name.lower() for name in names]
    default_background = (
        lowered.index("background") if "background" in lowered else None
    )
    background = _value(
        data.get("background", default_background), names, "background", path
    )
    return MaskClasses(names=names, ignore=ignore, background=background)


class MaskSource:
    """Images with one mask PNG each (pixel values are class indices).

    Mask `masks/<relative path>.png` belongs to `images/<relative path>.<ext>`
    (also `<stem>_mask.png`); `images/` and `masks/` may sit in the export's
    root or in each split folder, or hold split folders themselves.

    Attributes:
        format: Always "masks".
        root: The export folder.
        classes: The class list and special mask values.
    """

    format = "masks"

    def __init__(
        self,
        root: Path,
        pairs: list[tuple[Path, Path]],
        class_file: Path,
        *,
        uri: str | None = None,
    ) -> None:
        """Reads the class file; images and masks are paired when staging."""
        self.root = Path(os.path.abspath(root))
        self.pairs = pairs
        self.classes = read_mask_classes(class_file)
        self.uri = uri or str(self.root)

    def stage(self, dest: Path) -> Manifest:
        """Stages images and their masks (copied as is) into `dest`."""
        return write_staged(
            dest,
            self.entries(),
            class_names=self.classes.names,
            source=self.uri,
            source_format=self.format,
            root=self.root,
            kind=MASKS,
            mask_ignore=self.classes.ignore,
            mask_background=self.classes.background,
        )

    def entries(self) -> list[Entry]:
        """Lists every image with its split and mask (None when it has none)."""
        entries = []
        for images, masks in self.pairs:
            outer = split_from_path(images.parent.name)
            for image in list_images(images):
                relative = Path(relative_to(image, images))
                split = outer
                if split is None and len(relative.parts) > 1:
                    split = split_from_path(relative.parts[0])
                stem = relative.with_suffix("")
                candidates = [
                    masks / stem.with_suffix(".png"),
                    masks / stem.parent / f"{stem.name}_mask.png",
                ]
                mask = next((c for c in candidates if c.is_file()), None)
                entries.append(
                    Entry(
                        image=image,
                        source=relative_to(image, self.root),
                        split=split,
                        label=None,
                        mask=mask,
                    )
                )
        return entries
