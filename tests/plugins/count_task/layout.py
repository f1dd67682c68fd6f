"""Counting dataset layout: `<split>/<image>` and `counts/<split>/<stem>.txt`.

A counts file has one `<class name> <objects>` line per class present; the boxes
of the source are counted when the item is placed, and not kept.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from visionops.core.files import link_or_copy
from visionops.data.manifest import IMAGE_SUFFIXES, Item

CLASSES = "classes.txt"
COUNTS = "counts"
HASHED = ("train", "val", "test", COUNTS, CLASSES)
COUNTS_KEY = "objects_per_class"


def place_item(
    staged: Path, item: Item, split: str, dest: Path, class_names: list[str]
) -> Path:
    """Places one image in `split` and writes its counts; returns the image's path."""
    placed = dest / split / Path(item.image).name
    link_or_copy(staged / item.image, placed)
    lines = (staged / item.label).read_text().splitlines() if item.label else []
    found = Counter(int(line.split()[0]) for line in lines if line.strip())
    counts = counts_file(dest, placed)
    counts.parent.mkdir(parents=True, exist_ok=True)
    counts.write_text(
        "".join(f"{class_names[c]} {n}\n" for c, n in sorted(found.items()))
    )
    return placed


def counts_file(root: Path, image: Path) -> Path:
    """The counts of a placed image."""
    return root / COUNTS / image.parent.name / f"{image.stem}.txt"


def read_counts(root: Path, image: Path) -> dict[str, int]:
    """A placed image's objects by class name."""
    lines = counts_file(root, image).read_text().splitlines()
    return {name: int(n) for name, n in (line.rsplit(" ", 1) for line in lines)}


def write_config(dest: Path, class_names: list[str], splits: list[str]) -> None:
    """Writes `classes.txt`, one class name a line."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / CLASSES).write_text("".join(f"{name}\n" for name in class_names))


def ultralytics_data(root: Path) -> Path:
    """No Ultralytics dataset: the root (the task does not train)."""
    return root


def split_dir(root: Path, split: str) -> Path:
    """The folder that holds one split's images."""
    return root / split


def split_images(root: Path, split: str) -> list[Path]:
    """The images of one split, sorted."""
    folder = split_dir(root, split)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def label_file(root: Path, image: Path) -> Path | None:
    """No box labels are kept."""
    return None


def image_class(root: Path, image: Path) -> str | None:
    """The image's counts, as its thumbnail's caption on the dataset card."""
    return ", ".join(f"{n} {name}" for name, n in read_counts(root, image).items())
