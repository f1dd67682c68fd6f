"""Tagging dataset layout: `<split>/<image>` and `tags/<split>/<stem>.txt`."""

from __future__ import annotations

from pathlib import Path

from visionops.core.files import link_or_copy
from visionops.data.manifest import Item

HASHED = ("train", "val", "test", "tags")


def place_item(
    staged: Path, item: Item, split: str, dest: Path, class_names: list[str]
) -> Path:
    """Places one image in `split` and writes its tag; returns the image's path."""
    placed = dest / split / (staged / item.image).name
    link_or_copy(staged / item.image, placed)
    tag = dest / "tags" / split / f"{placed.stem}.txt"
    tag.parent.mkdir(parents=True, exist_ok=True)
    tag.write_text(class_names[item.class_id])
    return placed


def write_config(dest: Path, class_names: list[str], splits: list[str]) -> None:
    """No configuration file: the tags name the classes."""
    dest.mkdir(parents=True, exist_ok=True)


def ultralytics_data(root: Path) -> Path:
    """The root (the task does not train)."""
    return root


def split_dir(root: Path, split: str) -> Path:
    """The folder that holds one split's images."""
    return root / split


def split_images(root: Path, split: str) -> list[Path]:
    """The images of one split, sorted."""
    return sorted((root / split).glob("*.jpg"))


def label_file(root: Path, image: Path) -> Path | None:
    """No label files."""
    return None


def image_class(root: Path, image: Path) -> str | None:
    """The image's tag."""
    return (root / "tags" / image.parent.name / f"{image.stem}.txt").read_text()
