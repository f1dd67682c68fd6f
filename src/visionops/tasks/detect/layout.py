"""Detection dataset layout: images/<split>, labels/<split> and a data.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml

from visionops.core.files import link_or_copy
from visionops.data.manifest import IMAGE_SUFFIXES, Item

DATA_YAML = "data.yaml"
# What the content hash covers, relative to the version root.
HASHED = ("images", "labels", DATA_YAML)


def place_item(
    staged: Path, item: Item, split: str, dest: Path, class_names: list[str]
) -> Path:
    """Places one item's image and label in `split`; returns the image's path.

    An accepted item without a label file (a kept background image) gets an
    empty label, which Ultralytics reads as "no boxes".
    """
    image = staged / item.image
    placed = dest / "images" / split / image.name
    link_or_copy(image, placed)
    label_dst = dest / "labels" / split / f"{Path(image.name).stem}.txt"
    if item.label:
        link_or_copy(staged / item.label, label_dst)
    else:
        label_dst.parent.mkdir(parents=True, exist_ok=True)
        label_dst.write_text("")
    return placed


def write_config(dest: Path, class_names: list[str], splits: list[str]) -> None:
    """Writes `data.yaml` naming the classes and the splits that hold images."""
    data_yaml = {
        "names": dict(enumerate(class_names)),
        "nc": len(class_names),
        # No `path:` key: Ultralytics then resolves these next to data.yaml, so the
        # folder can move between machines and artifact stores.
        **{s: f"images/{s}" for s in splits},
    }
    dest.mkdir(parents=True, exist_ok=True)
    (dest / DATA_YAML).write_text(yaml.safe_dump(data_yaml, sort_keys=False))


def ultralytics_data(root: Path) -> Path:
    """What to pass to Ultralytics as `data=`: the data.yaml."""
    return root / DATA_YAML


def split_dir(root: Path, split: str) -> Path:
    """The folder that holds one split's images."""
    return root / "images" / split


def split_images(root: Path, split: str) -> list[Path]:
    """The images of one split, sorted."""
    folder = split_dir(root, split)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def label_file(root: Path, image: Path) -> Path | None:
    """The YOLO label of a placed image."""
    return root / "labels" / image.parent.name / f"{image.stem}.txt"


def image_class(root: Path, image: Path) -> str | None:
    """Detection images have no image-level class."""
    return None
