"""Classification exports: a folder per class, optionally inside split folders."""

from __future__ import annotations

import os
from pathlib import Path

from visionops.data.manifest import IMAGE_CLASS, Manifest
from visionops.data.sources.base import (
    Entry,
    is_image,
    list_images,
    normalise_split,
    relative_to,
    write_staged,
)

# Folders that belong to detection layouts, never class names.
_NOT_CLASSES = {"images", "labels", "__macosx"}


def _subfolders(folder: Path) -> list[Path]:
    return sorted(
        d
        for d in folder.iterdir()
        if d.is_dir() and not d.is_symlink() and not d.name.startswith((".", "__"))
    )


def _has_images(folder: Path) -> bool:
    return any(is_image(p) for p in folder.rglob("*"))


def _class_folders(folder: Path) -> list[Path] | None:
    """The class folders of `folder` when every sub-folder is one, else None."""
    folders = _subfolders(folder)
    if not folders or any(d.name.lower() in _NOT_CLASSES for d in folders):
        return None
    if any(normalise_split(d.name) for d in folders):
        return None
    # Beside class folders an export holds at most a README or a licence; any
    # other file (a .json, a classes.txt) means another layout.
    loose = [
        p
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and not p.name.upper().startswith(("README", "LICENSE", "LICENCE"))
    ]
    if loose or not all(_has_images(d) for d in folders):
        return None
    return folders


def find_class_layout(root: Path) -> dict[str | None, list[Path]] | None:
    """Finds `<class>/` or `<split>/<class>/` folders below `root`.

    Returns:
        Class folders per split (None when the export has no splits), or None
        when `root` is not a classification layout.
    """
    folders = _subfolders(root)
    splits = {d: normalise_split(d.name) for d in folders}
    if folders and all(splits.values()):
        found: dict[str | None, list[Path]] = {}
        for folder, split in splits.items():
            classes = _class_folders(folder)
            if classes is None:
                return None
            found.setdefault(split, []).extend(classes)
        names = {d.name for classes in found.values() for d in classes}
        return found if len(names) >= 2 else None
    classes = _class_folders(root)
    if classes is None or len(classes) < 2:
        return None
    return {None: classes}


class ClassFolderSource:
    """Images sorted into one folder per class, optionally per split folder.

    Attributes:
        format: Always "folders".
        root: The export folder; item sources are relative to it.
    """

    format = "folders"
    kind = IMAGE_CLASS

    def __init__(
        self,
        root: Path,
        layout: dict[str | None, list[Path]],
        *,
        uri: str | None = None,
    ) -> None:
        """Records the class folders found by `find_class_layout`.

        Args:
            root: The export folder.
            layout: Class folders per split.
            uri: What the user passed, recorded in the manifest.
        """
        self.root = Path(os.path.abspath(root))
        self.layout = layout
        self.uri = uri or str(self.root)
        # Sorted, as Ultralytics numbers the class folders it trains on.
        self.class_names = sorted({d.name for ds in layout.values() for d in ds})

    def stage(self, dest: Path) -> Manifest:
        """Stages every image with its folder's class into `dest`."""
        entries = [
            Entry(
                image=image,
                source=relative_to(image, self.root),
                split=split,
                label=None,
                class_id=self.class_names.index(folder.name),
            )
            for split, folders in self.layout.items()
            for folder in folders
            for image in list_images(folder)
        ]
        return write_staged(
            dest,
            entries,
            class_names=self.class_names,
            source=self.uri,
            source_format=self.format,
            root=self.root,
            kind=self.kind,
        )
