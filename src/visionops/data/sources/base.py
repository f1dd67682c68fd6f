"""What every dataset source shares: the protocol, the error and the staging writer."""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from visionops.core.files import ensure_empty_dir
from visionops.data.manifest import (
    BOXES,
    IMAGE_SUFFIXES,
    Item,
    Manifest,
    group_key,
    safe_id,
)

logger = logging.getLogger(__name__)

IMAGES_DIR = "images"
LABELS_DIR = "labels"
MASKS_DIR = "masks"

_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
# A split word inside a longer name: `instances_train2017`, `valid-set`, not `latest`.
_SPLIT_TOKEN = re.compile(
    r"(?<![a-z])(training|train|validation|valid|val|testing|test)(?![a-z])",
    re.IGNORECASE,
)


class SourceError(ValueError):
    """A dataset source cannot be read; the message says why and what to do."""


class Source(Protocol):
    """A labelled export that can be staged as YOLO images, labels and a manifest."""

    format: str

    def stage(self, dest: Path) -> Manifest:
        """Writes the staged dataset into the empty directory `dest`."""
        ...


@dataclass(frozen=True)
class Entry:
    """One image a source found, before it is staged.

    Attributes:
        image: The image file; when it does not exist a zero-byte placeholder is
            staged so that validation reports it instead of it going missing.
        source: Path relative to the source root; gives the item id and order.
        split: The source's split (train/val/test) or None.
        label: A YOLO txt file to copy, the label text to write, or None when
            the source has no label for this image.
        class_id: The image-level class (classification sources), else None.
        mask: The mask image of class indices (mask sources), else None.
        problem: `reason: detail` when the source knows the files must not be
            read (e.g. a name leading outside the export), else None.
    """

    image: Path
    source: str
    split: str | None
    label: Path | str | None
    class_id: int | None = None
    mask: Path | None = None
    problem: str | None = None


def normalise_split(name: str | None) -> str | None:
    """Maps split names (`valid`, `validation`, `training`...) to train/val/test."""
    if name is None:
        return None
    return _SPLIT_ALIASES.get(name.strip().lower())


def split_from_path(relative: str) -> str | None:
    """Finds a split word in a path, file name first, then the nearest folder."""
    parts = Path(relative).parts
    for part in reversed(parts):
        match = _SPLIT_TOKEN.search(Path(part).stem if part == parts[-1] else part)
        if match:
            return normalise_split(match.group(1))
    return None


def is_image(path: Path) -> bool:
    """Tells whether a path names an image file by its suffix."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    """Returns every image below `folder`, sorted, the way Ultralytics globs them.

    A dangling link with an image name is listed too, so that it is staged,
    quarantined and counted instead of silently missing.
    """
    return sorted(
        p for p in folder.rglob("*") if is_image(p) and (p.is_file() or p.is_symlink())
    )


def is_inside(path: Path, root: Path) -> bool:
    """Tells whether `path`, links followed, lies inside `root` (links followed)."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def relative_to(path: Path, root: Path) -> str:
    """Returns `path` relative to `root` as a POSIX string (may start with `..`)."""
    return Path(os.path.relpath(path, root)).as_posix()


def prepare_dest(dest: Path) -> None:
    """Creates the staging folders, refusing to mix with an earlier staging."""
    try:
        ensure_empty_dir(dest)
    except ValueError as err:
        raise SourceError(str(err)) from None
    (dest / IMAGES_DIR).mkdir(exist_ok=True)
    (dest / LABELS_DIR).mkdir(exist_ok=True)


def _unique_ids(entries: Iterable[Entry]) -> list[str]:
    ids: list[str] = []
    taken: set[str] = set()
    for entry in entries:
        base = safe_id(entry.source)
        candidate, n = base, 1
        # Case-insensitive, so staged names also stay distinct on macOS/Windows.
        while candidate.lower() in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate.lower())
        ids.append(candidate)
    return ids


_Write = tuple[Path, Path, Path | str | None, Path | None, Path | None, Path | None]


def _write_one(task: _Write) -> bool:
    image_src, image_dst, label_src, label_dst, mask_src, mask_dst = task
    placeholder = not image_src.is_file()
    if placeholder:
        # Written for a missing image and for one outside the export (whose
        # bytes are never read): validation quarantines either.
        image_dst.touch()
    else:
        # A copy, not a link: the stored artifact must not change if the
        # user edits their source files in place.
        shutil.copyfile(image_src, image_dst)
    if label_dst is not None:
        if isinstance(label_src, Path):
            shutil.copyfile(label_src, label_dst)
        elif isinstance(label_src, str):
            label_dst.write_text(label_src)
    if mask_src is not None and mask_dst is not None:
        shutil.copyfile(mask_src, mask_dst)
    return placeholder


def _problem(entry: Entry, root: Path) -> str | None:
    """Why the files of `entry` must not be read: the source's reason, outside
    `root`, or a dead link."""
    if entry.problem:
        return entry.problem
    image = entry.image
    if image.is_symlink() and not image.exists():
        return f"image_missing: dangling link to {os.readlink(image)}"
    for path in (image, entry.label, entry.mask):
        exists = isinstance(path, Path) and path.exists()
        if exists and not is_inside(path, root):
            where = f"{relative_to(path, root)} -> {os.path.realpath(path)}"
            return f"outside_export: links outside the export: {where}"
    return None


def write_staged(
    dest: Path,
    entries: Iterable[Entry],
    *,
    class_names: list[str],
    source: str,
    source_format: str,
    root: Path,
    kind: str = BOXES,
    mask_ignore: int | None = None,
    mask_background: int | None = None,
) -> Manifest:
    """Stages `entries` into `dest` and writes `manifest.json`.

    Files are copied byte for byte; nothing is decoded or
    checked here, so broken content reaches validation as the source had it.
    A file that lies outside `root` (a link, or a path the export names) is
    never read: its item is staged empty with a `problem` that validation
    quarantines.

    Args:
        dest: A new or empty directory.
        entries: What the source found; staged sorted by `Entry.source`.
        class_names: Names the label class ids index into.
        source: Where the dataset came from, for the manifest.
        source_format: The source's format name, for the manifest.
        root: The export's own folder; nothing outside it is read.
        kind: What the labels are (a kind of `visionops.data.manifest`).
        mask_ignore: The ignored value of the entries' masks, if any.
        mask_background: The no-object value of the entries' masks, if any.

    Returns:
        The manifest that was written.

    Raises:
        SourceError: When `dest` is not empty or the source had no images.
    """
    ordered = sorted(entries, key=lambda entry: entry.source)
    if not ordered:
        raise SourceError(
            f"{source} holds no images (looked for {', '.join(IMAGE_SUFFIXES)}). "
            "Check that the export contains its image folders."
        )
    prepare_dest(dest)
    items: list[Item] = []
    tasks: list[_Write] = []
    for entry, item_id in zip(ordered, _unique_ids(ordered), strict=True):
        # Only image suffixes: an image named `x.txt` would share its name
        # with its own label wherever the two are put side by side.
        suffix = entry.image.suffix if is_image(entry.image) else ".jpg"
        image = f"{IMAGES_DIR}/{item_id}{suffix}"
        label = None if entry.label is None else f"{LABELS_DIR}/{item_id}.txt"
        if isinstance(entry.label, Path) and not entry.label.is_file():
            label = None
        mask = None
        if entry.mask is not None and entry.mask.is_file():
            mask = f"{MASKS_DIR}/{item_id}.png"
        problem = _problem(entry, root)
        items.append(
            Item(
                id=item_id,
                image=image,
                label=None if problem else label,
                source=entry.source,
                source_split=entry.split,
                group=group_key(entry.image.name),
                class_id=entry.class_id,
                mask=None if problem else mask,
                problem=problem,
            )
        )
        if problem:
            tasks.append((dest / "nonexistent", dest / image, None, None, None, None))
            continue
        label_dst = dest / label if label else None
        mask_dst = dest / mask if mask else None
        if mask_dst is not None:
            mask_dst.parent.mkdir(exist_ok=True)
        tasks.append(
            (entry.image, dest / image, entry.label, label_dst, entry.mask, mask_dst)
        )
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) + 4)) as pool:
        placeholders = sum(pool.map(_write_one, tasks))
    placeholders -= sum(1 for item in items if item.problem)  # not missing: refused
    if placeholders:
        logger.warning(
            "%d image(s) named by %s are missing; staged as empty files so "
            "validation reports them.",
            placeholders,
            source,
        )
    manifest = Manifest(
        source=source,
        source_format=source_format,
        class_names=list(class_names),
        kind=kind,
        mask_ignore=mask_ignore,
        mask_background=mask_background,
        items=items,
    )
    manifest.write(dest)
    return manifest
