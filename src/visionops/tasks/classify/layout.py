"""Classification dataset layout, as Ultralytics reads it: <split>/<class>/<image>."""

from __future__ import annotations

from pathlib import Path

from visionops.core.files import link_or_copy
from visionops.data.manifest import IMAGE_SUFFIXES, Item

SPLITS = ("train", "val", "test")
# What the content hash covers, relative to the version root.
HASHED = SPLITS


def class_folder(name: str) -> str:
    """The folder name of a class (a class name with no path separator)."""
    return name.replace("/", "_").replace("\\", "_") or "_"


def place_item(
    staged: Path, item: Item, split: str, dest: Path, class_names: list[str]
) -> Path:
    """Places one item's image in its class folder of `split`; returns its path.

    Raises:
        ValueError: When the item has no class.
    """
    if item.class_id is None:
        raise ValueError(f"{item.id} has no class; validate the dataset first.")
    image = staged / item.image
    placed = dest / split / class_folder(class_names[item.class_id]) / image.name
    link_or_copy(image, placed)
    return placed


def write_config(dest: Path, class_names: list[str], splits: list[str]) -> None:
    """Creates a folder for every class in every split that holds images.

    Ultralytics takes the class list from the train folder names, sorted, so
    a class folder exists even where a split holds none of its images.
    """
    for split in splits:
        for name in class_names:
            (dest / split / class_folder(name)).mkdir(parents=True, exist_ok=True)


def ultralytics_data(root: Path) -> Path:
    """What to pass to Ultralytics as `data=`: the dataset folder."""
    return root


def split_dir(root: Path, split: str) -> Path:
    """The folder that holds one split's class folders."""
    return root / split


def split_images(root: Path, split: str) -> list[Path]:
    """The images of one split, every class, sorted by class then name."""
    folder = split_dir(root, split)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)


def label_file(root: Path, image: Path) -> Path | None:
    """Classification images have no label file."""
    return None


def image_class(root: Path, image: Path) -> str | None:
    """The class of a placed image: its folder's name."""
    return image.parent.name
