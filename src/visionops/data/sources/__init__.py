"""Dataset sources: detect an export's layout and stage it as YOLO plus a manifest."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionops.core.env import state_dir
from visionops.data.manifest import Manifest
from visionops.data.sources.archive import ArchiveLimits, check_zip, extract_zip
from visionops.data.sources.base import Source, SourceError, is_image
from visionops.data.sources.coco import CocoSource, find_coco_files, looks_like_coco
from visionops.data.sources.folders import ClassFolderSource, find_class_layout
from visionops.data.sources.masks import (
    MaskSource,
    find_class_file,
    find_mask_folders,
)
from visionops.data.sources.picsellia import (
    SCHEME,
    AnnotationFormat,
    PicselliaClient,
    PicselliaSource,
)
from visionops.data.sources.yolo import CLASSES_FILE, YoloSource, find_dataset_yaml

if TYPE_CHECKING:
    from visionops.engine.task import Task

SUPPORTED_LAYOUTS = (
    "Supported layouts:\n"
    "  - YOLO / Ultralytics / Roboflow: a data.yaml (or other *.yaml) with `names` "
    "and train/val/test paths\n"
    "  - YOLO: images/ + labels/ (optionally images/train, ...) with a classes.txt\n"
    "  - COCO detection: *.json with images, annotations and categories (e.g. "
    "annotations/instances_train.json, train/_annotations.coco.json)\n"
    "  - segmentation masks: images/ + masks/ (one PNG of class indices per "
    "image, optionally in train/, val/, test/) with a classes.json, .yaml or .txt\n"
    "  - classification: a folder per class (NORMAL/, PNEUMONIA/), optionally "
    "inside train/, val/ (or valid/) and test/ folders\n"
    "  - a .zip of any of these, or picsellia://<version id> / "
    "picsellia://<dataset>/<version>"
)
_SPLIT_FOLDERS = ("train", "valid", "val", "test")


class ArchiveSource:
    """A zipped export: checked on opening, extracted (once, cached) on staging.

    Attributes:
        format: "zip" until staged, then the format of the export inside.
        archive: The zip file.
    """

    format = "zip"

    def __init__(
        self,
        archive: Path,
        cache_dir: Path,
        limits: ArchiveLimits,
        kinds: tuple[str, ...] = (),
    ) -> None:
        """Reads the zip's directory only: readable, within limits, no zip-slip."""
        self.archive = archive
        self.cache_dir = cache_dir
        self.limits = limits
        self.kinds = kinds
        check_zip(archive, limits)

    def open_inner(self) -> Source:
        """Extracts the archive (once, cached) and opens the export it holds."""
        root = extract_zip(self.archive, self.cache_dir, self.limits)
        return _open_dir(root, uri=str(self.archive), kinds=self.kinds)

    def stage(self, dest: Path) -> Manifest:
        """Extracts the archive and stages the export it holds into `dest`."""
        inner = self.open_inner()
        self.format = inner.format
        return inner.stage(dest)


def default_cache_dir() -> Path:
    """Returns where zips are extracted and Picsellia downloads are kept."""
    return state_dir() / "cache" / "sources"


def open_source(
    uri: str | Path,
    *,
    picsellia_client: PicselliaClient | None = None,
    cache_dir: Path | None = None,
    picsellia_format: AnnotationFormat = "coco",
    archive_limits: ArchiveLimits | None = None,
    kinds: tuple[str, ...] = (),
) -> Source:
    """Detects what `uri` is and returns the source that reads it.

    Nothing is extracted or downloaded here: a zip's directory is checked
    (readable, within `archive_limits`, no member escaping); `check_source`
    goes further before a run.

    Args:
        uri: A dataset directory, a `.zip` of one, a dataset yaml or COCO json,
            or `picsellia://<version id>` / `picsellia://<dataset>/<version>`.
        picsellia_client: An SDK client to use instead of building one from
            `PICSELLIA_TOKEN` (or the ZenML secret `picsellia`).
        cache_dir: Where zips are extracted and Picsellia downloads are kept;
            defaults to `.visionops/cache/sources` in the project.
        picsellia_format: Picsellia export format, "coco" or "yolo".
        archive_limits: Caps on what a zip may expand to; defaults when None.
        kinds: The label kinds wanted (`visionops.data.manifest`), first
            preferred: with `POLYGONS` first, COCO polygons and RLE masks are
            kept as polygons instead of becoming boxes.

    Returns:
        A source whose `stage(dest)` writes the staged dataset.

    Raises:
        SourceError: When `uri` does not exist or its layout is not supported.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    text = str(uri)
    if text.startswith(SCHEME):
        return PicselliaSource(
            text,
            client=picsellia_client,
            cache_dir=cache,
            annotation_format=picsellia_format,
            kinds=kinds,
        )
    if "://" in text:
        raise SourceError(
            f"Cannot read {text!r}: only local paths and {SCHEME}... are supported. "
            "Download the dataset and pass its folder or .zip."
        )
    path = Path(os.path.abspath(Path(text).expanduser()))
    if not path.exists():
        raise SourceError(
            f"Dataset source {path} does not exist. Pass a dataset folder, a .zip "
            f"export or {SCHEME}<version id>."
        )
    if path.is_dir():
        return _open_dir(path, uri=str(path), kinds=kinds)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return ArchiveSource(
            path, cache / "archives", archive_limits or ArchiveLimits(), kinds=kinds
        )
    if suffix in (".yaml", ".yml"):
        return YoloSource(path.parent, yaml_path=path, uri=str(path))
    if suffix == ".json" and looks_like_coco(path):
        return CocoSource(path.parent, [path], uri=str(path), kinds=kinds)
    raise SourceError(f"{path} is not a dataset export.\n{SUPPORTED_LAYOUTS}")


def check_source(
    uri: str | Path,
    *,
    cache_dir: Path | None = None,
    archive_limits: ArchiveLimits | None = None,
) -> None:
    """The pre-run check: what `open_source` checks, then what staging would
    refuse before writing anything.

    A zip is extracted into the cache that staging then reuses (a corrupt
    member only shows when it is read), and COCO files are parsed and the
    shape of their entries checked. A Picsellia source is checked by staging.

    Args:
        uri: As for `open_source`.
        cache_dir: As for `open_source`.
        archive_limits: As for `open_source`.

    Raises:
        SourceError: Naming the file and what is wrong with it.
    """
    source = open_source(uri, cache_dir=cache_dir, archive_limits=archive_limits)
    if isinstance(source, ArchiveSource):
        source = source.open_inner()
    if isinstance(source, CocoSource):
        source.check()


def stage_source(
    uri: str | Path, dest: Path, *, tasks: Sequence[Task] = (), **kwargs: Any
) -> Manifest:
    """Opens `uri` (see `open_source`) and stages it into the empty folder `dest`.

    Args:
        uri: What to stage.
        dest: A new or empty folder.
        tasks: The tasks the dataset may be for, in order of preference: the
            one asked for, or every task (`visionops.tasks.ingestion_tasks`).
            The source is asked for the label kind the first prefers; the
            manifest names the first whose `label_kinds` hold the kind the
            source found. Empty: the manifest names no task yet.
        **kwargs: Passed to `open_source`.

    Returns:
        The manifest, with the kind of its labels and its `task`.

    Raises:
        SourceError: When the source cannot be read or none of `tasks` takes
            the kind of labels it holds.
    """
    wanted = tuple(tasks[0].label_kinds) if tasks else ()
    manifest = open_source(uri, kinds=wanted, **kwargs).stage(dest)
    if not tasks:
        return manifest
    task = next((t for t in tasks if manifest.kind in t.label_kinds), None)
    if task is None:
        asked = " or ".join(t.name for t in tasks)
        raise SourceError(
            f"{uri} holds {manifest.kind}, which a {asked} dataset does not take. "
            f"Drop the task setting or pass a {asked} export."
        )
    manifest = manifest.model_copy(update={"task": task.name})
    manifest.write(dest)
    return manifest


def _open_dir(
    root: Path, *, uri: str, kinds: tuple[str, ...] = (), depth: int = 0
) -> Source:
    mask_folders = find_mask_folders(root)
    class_file = find_class_file(root, mask_folders) if mask_folders else None
    if class_file is not None:
        return MaskSource(root, mask_folders, class_file, uri=uri)
    yaml_path = find_dataset_yaml(root)
    if yaml_path is not None:
        return YoloSource(root, yaml_path=yaml_path, uri=uri)
    coco_files = find_coco_files(root)
    if coco_files:
        return CocoSource(root, coco_files, uri=uri, kinds=kinds)
    class_layout = find_class_layout(root)
    if class_layout is not None:
        return ClassFolderSource(root, class_layout, uri=uri)
    image_dirs = [root / "images"] + [root / name / "images" for name in _SPLIT_FOLDERS]
    if (root / CLASSES_FILE).is_file() and any(d.is_dir() for d in image_dirs):
        return YoloSource(root, uri=uri)
    folders = sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir()
        and not d.is_symlink()
        and not d.name.startswith((".", "__MACOSX"))
    )
    # Zips and downloads often wrap the dataset in one top-level folder.
    if len(folders) == 1 and depth < 2:
        return _open_dir(root / folders[0], uri=uri, kinds=kinds, depth=depth + 1)
    raise SourceError(_describe(root, folders))


def _describe(root: Path, folders: list[str]) -> str:
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    images = sum(is_image(p) for p in files)
    texts = sum(p.suffix == ".txt" for p in files)
    found = (
        f"{images} image(s), {texts} .txt file(s), folders: "
        f"{', '.join(folders[:8]) or 'none'}{' ...' if len(folders) > 8 else ''}"
    )
    hint = ""
    if find_mask_folders(root):
        hint = (
            "\nIt has images/ and masks/ folders but no class list: add a "
            "classes.json (a list of names, mask value i being class i) beside them."
        )
    image_dirs = [root / "images"] + [root / name / "images" for name in _SPLIT_FOLDERS]
    if not hint and any(d.is_dir() for d in image_dirs):
        hint = (
            f"\nIt has image folders but no class names: add a {CLASSES_FILE} (one "
            "name per line) or a data.yaml with `names`."
        )
    return f"Cannot tell the dataset layout of {root}: found {found}.{hint}\n" + (
        SUPPORTED_LAYOUTS
    )


__all__ = [
    "ArchiveLimits",
    "ArchiveSource",
    "ClassFolderSource",
    "CocoSource",
    "MaskSource",
    "PicselliaClient",
    "PicselliaSource",
    "Source",
    "SourceError",
    "YoloSource",
    "check_source",
    "default_cache_dir",
    "open_source",
    "stage_source",
]
