"""YOLO / Ultralytics / Roboflow "YOLOv8" exports, with the path quirks they carry."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from visionops.data.manifest import Manifest
from visionops.data.sources.base import (
    Entry,
    SourceError,
    is_image,
    is_inside,
    list_images,
    normalise_split,
    relative_to,
    split_from_path,
    write_staged,
)

CLASSES_FILE = "classes.txt"
# data.yaml keys in the order their splits are read; `valid` is Roboflow's `val`.
SPLIT_KEYS = {"train": "train", "val": "val", "valid": "val", "test": "test"}
SPLIT_DIRS = {"train": ("train",), "val": ("valid", "val"), "test": ("test",)}


def load_yaml(path: Path) -> dict[str, Any]:
    """Reads a dataset yaml into a dict.

    Raises:
        SourceError: When the file is not valid YAML or not a mapping.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise SourceError(f"Cannot read {path}: {exc}. Fix the YAML syntax.") from None
    if not isinstance(data, dict):
        raise SourceError(
            f"{path} is not a dataset YAML (expected keys such as names and train)."
        )
    return data


def find_dataset_yaml(root: Path) -> Path | None:
    """Returns `data.yaml`, else the first `*.yaml`/`*.yml` in `root` with `names`."""
    candidates = [root / "data.yaml", root / "data.yml"]
    candidates += sorted(p for p in root.glob("*.y*ml") if p not in candidates)
    for path in candidates:
        if not path.is_file() or path.suffix not in (".yaml", ".yml"):
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError, yaml.YAMLError):
            if path.stem == "data":
                return path  # Report its syntax error rather than skip it.
            continue
        if isinstance(data, dict) and "names" in data:
            return path
    return None


def read_names(data: dict[str, Any], where: Path) -> list[str]:
    """Returns the class names of a dataset yaml (`names` as list or dict).

    Raises:
        SourceError: When names are missing, have gaps or disagree with `nc`.
    """
    names = data.get("names")
    if isinstance(names, dict):
        try:
            by_id = {int(key): str(value) for key, value in names.items()}
        except (TypeError, ValueError) as exc:
            raise SourceError(
                f"{where}: names keys must be class ids (0, 1, ...), got "
                f"{list(names)}. Use a list or a {{0: name}} mapping."
            ) from exc
        if sorted(by_id) != list(range(len(by_id))):
            raise SourceError(
                f"{where}: names ids {sorted(by_id)} are not 0..{len(by_id) - 1}. "
                "Number the classes without gaps, as label files index them."
            )
        result = [by_id[i] for i in range(len(by_id))]
    elif isinstance(names, list) and names:
        result = [str(name) for name in names]
    else:
        raise SourceError(
            f"{where}: names is missing or empty. List the class names, e.g. "
            "names: [cat, dog]."
        )
    nc = data.get("nc")
    try:
        nc = None if nc is None else int(nc)
    except (TypeError, ValueError):
        raise SourceError(f"{where}: nc is {nc!r}, not a number.") from None
    if nc is not None and nc != len(result):
        raise SourceError(
            f"{where}: nc is {nc} but names lists {len(result)} classes. Make them "
            "agree (or drop nc)."
        )
    return result


def read_classes_txt(path: Path) -> list[str]:
    """Returns the class names of a `classes.txt`, one per non-empty line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, ValueError) as exc:
        raise SourceError(f"Cannot read {path}: {exc}. Save it as UTF-8.") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise SourceError(f"{path} is empty. Put one class name per line.")
    return names


def label_path(image: Path) -> Path:
    """Returns the label of an image by the Ultralytics `img2label_paths` rule."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    text = sb.join(str(image).rsplit(sa, 1))
    return Path(text.rsplit(".", 1)[0] + ".txt")


def _abs(path: Path) -> Path:
    # abspath, not resolve: symlinked images keep the path the export gave them.
    return Path(os.path.abspath(path))


def _locate(
    raw: str, bases: list[Path], root: Path, last: Sequence[Path] = ()
) -> Path | None:
    """Finds a path written on another machine, relative to `bases`.

    Tries it as given, then Ultralytics' `../` strip, then ever shorter tails
    (`Recog0801-1/train/images` -> `train/images`), then `last`. Only paths
    inside `root` (links followed) count: an export never reads the host.
    """
    text = raw.strip().replace("\\", "/")
    path = Path(text)
    candidates: list[Path] = [path] if path.is_absolute() else []
    for base in bases:
        if not path.is_absolute():
            candidates.append(base / path)
            if text.startswith("../"):
                candidates.append(base / text[3:])
    parts = [part for part in path.parts if part not in ("/", "..", ".")]
    for start in range(len(parts)):
        tail = parts[start:]
        # A one-part tail only when it names a split, so `images` alone never
        # swallows every split.
        if len(tail) >= 2 or normalise_split(Path(tail[0]).stem):
            candidates += [base.joinpath(*tail) for base in bases]
    candidates += list(last)
    return next((c for c in candidates if c.exists() and is_inside(c, root)), None)


def _inner(raw: str) -> Path:
    """A path from an export's text, made relative and without `..` parts."""
    parts = Path(raw.strip().replace("\\", "/")).parts
    return Path(*[p for p in parts if p not in ("/", "..", ".")] or ["missing"])


class YoloSource:
    """A YOLO detection dataset: a yaml or `classes.txt` plus image and label folders.

    Attributes:
        format: Always "yolo".
        root: The folder the yaml (or classes.txt) is in; item sources are
            relative to it.
    """

    format = "yolo"

    def __init__(
        self,
        root: Path,
        *,
        yaml_path: Path | None = None,
        class_names: list[str] | None = None,
        uri: str | None = None,
    ) -> None:
        """Reads the class names; folders are resolved when staging.

        Args:
            root: Dataset folder.
            yaml_path: Its dataset yaml, if it has one.
            class_names: Class names when there is no yaml; defaults to the
                names in `root/classes.txt`.
            uri: What the user passed, recorded in the manifest.
        """
        self.root = _abs(root)
        self.uri = uri or str(self.root)
        self._data: dict[str, Any] = {}
        if yaml_path is not None:
            self._data = load_yaml(yaml_path)
            self.class_names = read_names(self._data, yaml_path)
        elif class_names is not None:
            self.class_names = list(class_names)
        else:
            self.class_names = read_classes_txt(self.root / CLASSES_FILE)
        self._where = yaml_path or self.root / CLASSES_FILE

    def stage(self, dest: Path) -> Manifest:
        """Stages the images and labels into `dest` (see `write_staged`)."""
        return write_staged(
            dest,
            self.entries(),
            class_names=self.class_names,
            source=self.uri,
            source_format=self.format,
            root=self.root,
        )

    def entries(self) -> list[Entry]:
        """Lists every image with its split and label file."""
        images = self._from_yaml_splits() or self._from_split_dirs()
        images = images or self._from_images_dir()
        if not images:
            raise SourceError(
                f"{self.root} has no images: {self._where.name} names no train/val/"
                "test folders and there is no train/images, valid/images or images/ "
                "folder. Point the yaml at the image folders."
            )
        seen: set[Path] = set()
        entries = []
        for image, split in images:
            # A folder listed under two keys (val: same as train) is read once.
            if image in seen:
                continue
            seen.add(image)
            label = label_path(image)
            entries.append(
                Entry(
                    image=image,
                    source=relative_to(image, self.root),
                    split=split,
                    label=label if label.is_file() else None,
                )
            )
        return entries

    def _bases(self) -> list[Path]:
        bases = []
        if isinstance(self._data.get("path"), str) and self._data["path"]:
            given = Path(self._data["path"].replace("\\", "/"))
            base = given if given.is_absolute() else self.root / given
            if base.is_dir() and is_inside(base, self.root):
                bases.append(_abs(base))
        return [*bases, self.root]

    def _from_yaml_splits(self) -> list[tuple[Path, str | None]]:
        found: list[tuple[Path, str | None]] = []
        for key, split in SPLIT_KEYS.items():
            value = self._data.get(key)
            if not value:
                continue
            for raw in value if isinstance(value, list) else [value]:
                fallback = [
                    path
                    for name in SPLIT_DIRS[split]
                    for path in (
                        self.root / name / "images",
                        self.root / "images" / name,
                    )
                ]
                where = _locate(str(raw), self._bases(), self.root, fallback)
                if where is None:
                    raise SourceError(
                        f"{self._where}: {key}: {raw} does not exist inside the "
                        f"export {self.root}, neither as given nor as "
                        f"{SPLIT_DIRS[split][0]}/images beside the yaml. Fix the path "
                        "(relative to the yaml) or remove the key."
                    )
                found += [(image, split) for image in self._read_split(where)]
        return found

    def _read_split(self, where: Path) -> list[Path]:
        if where.is_dir():
            return [_abs(image) for image in list_images(where)]
        if is_image(where):
            return [_abs(where)]
        # A .txt list of image paths, relative to the list's folder.
        images = []
        try:
            text = where.read_text(encoding="utf-8-sig")
        except (OSError, ValueError) as exc:
            raise SourceError(
                f"Cannot read the image list {where}: {exc}. Save it as UTF-8 text."
            ) from None
        for line in text.splitlines():
            if not line.strip():
                continue
            found = _locate(line, [_abs(where.parent), *self._bases()], self.root)
            images.append(_abs(found or self.root / _inner(line)))
        return images

    def _from_split_dirs(self) -> list[tuple[Path, str | None]]:
        found: list[tuple[Path, str | None]] = []
        for split, names in SPLIT_DIRS.items():
            for name in names:
                folder = self.root / name / "images"
                if folder.is_dir():
                    found += [(image, split) for image in self._read_split(folder)]
        return found

    def _from_images_dir(self) -> list[tuple[Path, str | None]]:
        folder = self.root / "images"
        if not folder.is_dir():
            return []
        found: list[tuple[Path, str | None]] = []
        for image in self._read_split(folder):
            relative = Path(relative_to(image, folder))
            # images/train/a.jpg style: the sub-folder names the split.
            split = (
                split_from_path(relative.parts[0]) if len(relative.parts) > 1 else None
            )
            found.append((image, split))
        return found
