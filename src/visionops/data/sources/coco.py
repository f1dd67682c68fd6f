"""COCO detection and segmentation JSON (COCO layout, Roboflow, Picsellia exports)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visionops.data.manifest import BOXES, IMAGE_CLASS, POLYGONS, Manifest
from visionops.data.masks import format_polygon_line, mask_polygons
from visionops.data.sources.base import (
    Entry,
    SourceError,
    is_inside,
    list_images,
    relative_to,
    split_from_path,
    write_staged,
)

logger = logging.getLogger(__name__)

# Written for an annotation that refers to no known category, so that
# validation reports it as an unknown class id instead of it being lost.
UNKNOWN_CLASS = -1
_SNIFF_BYTES = 1 << 20
_KEY = re.compile(rb'"(images|categories)"\s*:')
_SPLIT_RANK = {"train": 0, "val": 1, "test": 2}


def looks_like_coco(path: Path) -> bool:
    """Tells, without parsing it all, whether a json file is a COCO dataset.

    Official COCO files put `categories` last, after hundreds of MB of
    annotations, so the first and last MB are searched for the keys.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(len(head), size - _SNIFF_BYTES))
            tail = handle.read()
    except OSError:
        return False
    return {m.group(1) for m in _KEY.finditer(head + tail)} == {
        b"images",
        b"categories",
    }


def find_coco_files(root: Path) -> list[Path]:
    """Returns the COCO jsons in `root` and its direct sub-folders, train first."""
    candidates = sorted({*root.glob("*.json"), *root.glob("*/*.json")})
    found = [path for path in candidates if looks_like_coco(path)]
    return sorted(
        found,
        key=lambda p: (
            _SPLIT_RANK.get(split_from_path(relative_to(p, root)) or "", 3),
            relative_to(p, root),
        ),
    )


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _rle_counts(counts: str) -> list[int]:
    # pycocotools' compressed RLE (rleFrString): 5-bit groups, delta-coded.
    values: list[int] = []
    pos = 0
    while pos < len(counts):
        value, shift, more = 0, 0, True
        while more:
            char = ord(counts[pos]) - 48
            value |= (char & 0x1F) << (5 * shift)
            more = bool(char & 0x20)
            pos += 1
            shift += 1
            if not more and char & 0x10:
                value |= -1 << (5 * shift)
        if len(values) > 2:
            value += values[-2]
        values.append(value)
    return values


def _rle_box(rle: dict[str, Any]) -> tuple[float, float, float, float] | None:
    height = int(rle["size"][0])
    counts = rle["counts"]
    counts = _rle_counts(counts) if isinstance(counts, str) else list(counts)
    xs: list[int] = []
    ys: list[int] = []
    pos = 0
    # Runs alternate background/foreground over the column-major mask.
    for index, run in enumerate(counts):
        if index % 2 and run > 0:
            first, last = pos, pos + run - 1
            xs += [first // height, last // height]
            if first // height == last // height:
                ys += [first % height, last % height]
            else:
                ys += [0, height - 1]
        pos += run
    if not xs:
        return None
    return min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1


def rle_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decodes a COCO RLE (compressed string or uncompressed counts) to a mask.

    Returns:
        A uint8 (height, width) array, 1 inside the object.

    Raises:
        ValueError: When the RLE is malformed or its runs overrun its size.
    """
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    runs = _rle_counts(counts) if isinstance(counts, str) else [int(v) for v in counts]
    if any(run < 0 for run in runs) or sum(runs) > height * width:
        raise ValueError(f"RLE runs do not fit a {width}x{height} mask")
    flat = np.zeros(height * width, np.uint8)
    pos = 0
    # Runs alternate background/foreground over the column-major mask.
    for index, run in enumerate(runs):
        if index % 2:
            flat[pos : pos + run] = 1
        pos += run
    return flat.reshape(width, height).T


def segment_lines(
    class_id: int, annotation: dict[str, Any], width: float, height: float
) -> list[str]:
    """Returns YOLO polygon lines for a COCO annotation's segmentation.

    Each polygon of the annotation is a line; an RLE mask gives one line per
    connected region. Coordinates are normalised, not clipped (validation
    judges them). An annotation without a segmentation keeps its box as a
    `cls cx cy w h` line, which validation refuses for a segment dataset;
    one it cannot read gives NaN, which validation quarantines.
    """
    segmentation = annotation.get("segmentation")
    if not (width > 0 and height > 0):
        width = height = math.nan
    try:
        if isinstance(segmentation, dict):
            polygons = mask_polygons(rle_mask(segmentation))
            flat = [p.reshape(-1).tolist() for p in polygons]
        elif isinstance(segmentation, list) and segmentation:
            nested = isinstance(segmentation[0], list)
            flat = [
                [float(v) for v in poly]
                for poly in (segmentation if nested else [segmentation])
            ]
        else:
            return [yolo_line(class_id, annotation_box(annotation), width, height)]
        scale = np.array([width, height], np.float64)
        return [
            format_polygon_line(
                class_id, np.asarray(values, np.float64).reshape(-1, 2) / scale
            )
            for values in flat
            if values
        ]
    except (TypeError, ValueError, KeyError, IndexError):
        return [f"{class_id} nan nan nan nan nan nan"]


def annotation_box(annotation: dict[str, Any]) -> tuple[float, float, float, float]:
    """Returns an annotation's pixel box [x, y, w, h], NaN when it has none.

    The `bbox` wins; without one the box is taken from the segmentation
    (polygons or RLE). NaN makes validation quarantine the image rather than
    train on it with an object missing.
    """
    bbox = annotation.get("bbox")
    if isinstance(bbox, list | tuple) and len(bbox) == 4:
        x, y, w, h = (_num(v) for v in bbox)
        return x, y, w, h
    segmentation = annotation.get("segmentation")
    try:
        if isinstance(segmentation, list) and segmentation:
            polygons = (
                segmentation if isinstance(segmentation[0], list) else [segmentation]
            )
            xs = [float(v) for poly in polygons for v in poly[0::2]]
            ys = [float(v) for poly in polygons for v in poly[1::2]]
            if xs and ys:
                return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
        elif isinstance(segmentation, dict):
            box = _rle_box(segmentation)
            if box is not None:
                return box
    except (TypeError, ValueError, KeyError, IndexError):
        pass
    return math.nan, math.nan, math.nan, math.nan


def yolo_line(
    class_id: int, box: tuple[float, ...], width: float, height: float
) -> str:
    """Formats a pixel [x, y, w, h] box as a normalised YOLO `cls cx cy w h` line.

    Boxes are not clipped: out-of-range values stay for validation to judge.
    """
    x, y, w, h = box
    if not (width > 0 and height > 0):
        width = height = math.nan
    cx, cy = (x + w / 2) / width, (y + h / 2) / height
    return f"{class_id} {cx:.6f} {cy:.6f} {w / width:.6f} {h / height:.6f}"


def _image_size(image: dict[str, Any], path: Path | None) -> tuple[float, float]:
    width, height = _num(image.get("width")), _num(image.get("height"))
    if width > 0 and height > 0:
        return width, height
    if path is not None:
        try:
            with Image.open(path) as opened:  # Reads the header only.
                return float(opened.width), float(opened.height)
        except Exception:  # Unreadable images are validation's call.
            pass
    return math.nan, math.nan


def _dummy_categories(categories: list[dict[str, Any]], used: set[Any]) -> set[Any]:
    # Roboflow adds category 0 named after the supercategory of the real
    # classes ({"id": 0, "name": "boards", "supercategory": "none"}). It is a
    # grouping, not a class, but only dropped when no annotation uses it.
    return {
        c.get("id")
        for c in categories
        if c.get("id") not in used
        and any(
            o.get("id") != c.get("id") and o.get("supercategory") == c.get("name")
            for o in categories
        )
    }


def _has_geometry(annotation: dict[str, Any]) -> bool:
    """Tells whether an annotation has a box or a polygon (not image-level)."""
    bbox = annotation.get("bbox")
    return bool(bbox) or bool(annotation.get("segmentation"))


def _check_shape(path: Path, doc: dict[str, Any]) -> None:
    """Refuses the shapes a COCO reader cannot use, naming the first one.

    Raises:
        SourceError: When an entry is not an object or an id is not a number
            or a string.
    """
    annotations = doc.get("annotations")
    if annotations is not None and not isinstance(annotations, list):
        raise SourceError(
            f"{path}: `annotations` is a {type(annotations).__name__}, not a list. "
            "Re-export the dataset as COCO detection JSON."
        )
    for key, fields in (
        ("images", ("id",)),
        ("categories", ("id",)),
        ("annotations", ("image_id", "category_id")),
    ):
        for index, entry in enumerate(doc.get(key) or []):
            if not isinstance(entry, dict):
                raise SourceError(
                    f"{path}: {key}[{index}] is a {type(entry).__name__}, not an "
                    "object. Re-export the dataset as COCO detection JSON."
                )
            for field in fields:
                value = entry.get(field)
                if value is not None and not isinstance(value, int | float | str):
                    raise SourceError(
                        f"{path}: {key}[{index}].{field} is {value!r}; ids must be "
                        "numbers or strings. Re-export the dataset."
                    )


class _ImageFinder:
    """Finds a COCO `file_name` on disk, wherever the export put the images."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._by_name: dict[str, list[Path]] | None = None

    def find(self, file_name: str, json_dir: Path, split: str | None) -> Path | None:
        # Absolute or climbing names are only ever looked up inside the export.
        text = file_name.replace("\\", "/")
        relative = Path(text.lstrip("/"))
        parts = [part for part in relative.parts if part not in ("..", ".")]
        if not parts:
            return None
        candidates = []
        for base in (json_dir, self.root, self.root / "images", json_dir / "images"):
            candidates += [base.joinpath(*parts[i:]) for i in range(len(parts))]
        found = next(
            (c for c in candidates if c.is_file() and is_inside(c, self.root)), None
        )
        if found is not None:
            return found
        matches = self._index().get(parts[-1], [])
        if len(matches) > 1:
            # Same file name in several folders: prefer the json's own folder,
            # then the folder named after the json's split.
            inside = [m for m in matches if json_dir in m.parents]
            by_split = [
                m
                for m in matches
                if split_from_path(relative_to(m, self.root)) == split
            ]
            matches = inside or by_split or matches
        return matches[0] if matches else None

    def _index(self) -> dict[str, list[Path]]:
        if self._by_name is None:
            self._by_name = defaultdict(list)
            for path in list_images(self.root):
                self._by_name[path.name].append(path)
        return self._by_name


class CocoSource:
    """One or more COCO detection json files and their images.

    Attributes:
        format: Always "coco".
        root: Item sources are relative to it; images are searched below it.
        json_files: The annotation files, merged by class name in this order.
    """

    format = "coco"

    def __init__(
        self,
        root: Path,
        json_files: list[Path],
        *,
        uri: str | None = None,
        kinds: tuple[str, ...] = (),
    ):
        """Records where the export is; nothing is parsed until staging.

        Args:
            root: The export folder (images are searched below it).
            json_files: COCO json files, e.g. from `find_coco_files`.
            uri: What the user passed, recorded in the manifest.
            kinds: The label kinds wanted, first preferred: with `POLYGONS`
                first, polygons and RLE masks become YOLO polygon lines;
                otherwise every annotation becomes a box.
        """
        self.root = Path(os.path.abspath(root))
        self.json_files = [Path(os.path.abspath(path)) for path in json_files]
        self.uri = uri or str(self.root)
        self.wanted = kinds
        self.kind = BOXES

    def check(self) -> None:
        """Parses every json file and checks its shape, as staging would.

        Raises:
            SourceError: Naming the file and the first problem in it.
        """
        for path in self.json_files:
            self._load(path)

    def stage(self, dest: Path) -> Manifest:
        """Converts the annotations and stages them into `dest`."""
        class_names, entries = self.collect()
        return write_staged(
            dest,
            entries,
            class_names=class_names,
            source=self.uri,
            source_format=self.format,
            root=self.root,
            kind=self.kind,
        )

    def collect(self) -> tuple[list[str], list[Entry]]:
        """Returns the merged class names and one entry per image.

        Categories are matched across files by name, never by id; images
        without annotations get an empty label (COCO lists negatives that
        way), and a file without an `annotations` key leaves its images
        unlabelled. When no annotation has a box or a polygon, the labels are
        image-level (a classification export): each entry then gets a
        `class_id`, and the class names are sorted as Ultralytics sorts its
        class folders.
        """
        class_names: list[str] = []
        docs = [(path, self._load(path)) for path in self.json_files]
        annotations_all = [a for _, doc in docs for a in doc.get("annotations") or []]
        self.kind = (
            IMAGE_CLASS
            if annotations_all and not any(map(_has_geometry, annotations_all))
            else POLYGONS
            if self.wanted[:1] == (POLYGONS,)
            else BOXES
        )
        entries: list[Entry] = []
        finder = _ImageFinder(self.root)
        for path, doc in docs:
            split = split_from_path(relative_to(path, self.root))
            annotations = doc.get("annotations")
            class_of = self._class_map(doc, class_names)
            by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
            for annotation in annotations or []:
                by_image[annotation.get("image_id")].append(annotation)
            known = {image.get("id") for image in doc["images"]}
            orphans = sum(len(v) for k, v in by_image.items() if k not in known)
            if orphans:
                logger.warning(
                    "%s: %d annotation(s) name no listed image.", path, orphans
                )
            for index, image in enumerate(doc["images"]):
                file_name = image.get("file_name")
                file_name = file_name if isinstance(file_name, str) else ""
                found = finder.find(file_name, path.parent, split)
                # A listed image that is not on disk is still staged (as an
                # empty file) so validation reports it instead of it vanishing.
                where, problem = (
                    (found, None) if found else self._expected(file_name, path, index)
                )
                own = by_image.get(image.get("id"), [])
                label: str | None = None
                class_id: int | None = None
                if self.kind == IMAGE_CLASS:
                    ids = {class_of.get(a.get("category_id")) for a in own}
                    # None (no label, or several) is quarantined by validation.
                    class_id = ids.pop() if len(ids) == 1 else None
                elif annotations is not None:
                    width, height = _image_size(image, found)
                    lines = [
                        line
                        for a in own
                        for line in self._lines(
                            class_of.get(a.get("category_id"), UNKNOWN_CLASS),
                            a,
                            width,
                            height,
                        )
                    ]
                    label = "".join(f"{line}\n" for line in lines)
                entries.append(
                    Entry(
                        image=where,
                        source=relative_to(where, self.root),
                        split=split,
                        label=label,
                        class_id=class_id,
                        problem=problem,
                    )
                )
        if self.kind == IMAGE_CLASS:
            order = sorted(class_names)
            remap: dict[int | None, int] = {
                i: order.index(name) for i, name in enumerate(class_names)
            }
            entries = [
                dataclasses.replace(e, class_id=remap.get(e.class_id)) for e in entries
            ]
            class_names = order
        return class_names, entries

    def _lines(
        self, class_id: int, annotation: dict[str, Any], width: float, height: float
    ) -> list[str]:
        if self.kind == POLYGONS:
            return segment_lines(class_id, annotation, width, height)
        return [yolo_line(class_id, annotation_box(annotation), width, height)]

    def _expected(
        self, file_name: str, json_file: Path, index: int
    ) -> tuple[Path, str | None]:
        """Where a listed image the export lacks is staged from (an empty
        placeholder), and the problem when its name leads outside the export."""
        json_dir = json_file.parent
        text = file_name.replace("\\", "/")
        parts = [p for p in Path(text).parts if p not in ("/", "..", ".")]
        if not parts:
            return json_dir / f"images[{index}] has no file_name.jpg", None
        if not is_inside(Path(os.path.normpath(json_dir / text)), self.root):
            # Named by its entry, never after the outside path.
            return json_dir / f"images[{index}] outside the export.jpg", (
                f"outside_export: {json_file.name} images[{index}].file_name "
                f"{file_name!r} leads outside the export"
            )
        base = json_dir if self.root in (json_dir, *json_dir.parents) else self.root
        return base.joinpath(*parts), None

    @staticmethod
    def _load(path: Path) -> dict[str, Any]:
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise SourceError(
                f"Cannot read {path}: {exc}. Re-export the file."
            ) from exc
        if not (
            isinstance(doc, dict)
            and isinstance(doc.get("images"), list)
            and isinstance(doc.get("categories"), list)
        ):
            raise SourceError(
                f"{path} is not a COCO detection file: it needs `images` and "
                "`categories` lists. Export the dataset as COCO detection JSON."
            )
        _check_shape(path, doc)
        return doc

    @staticmethod
    def _class_map(doc: dict[str, Any], class_names: list[str]) -> dict[Any, int]:
        categories = sorted(
            (c for c in doc["categories"] if isinstance(c, dict)),
            key=lambda c: (_num(c.get("id")), str(c.get("id"))),
        )
        used = {a.get("category_id") for a in doc.get("annotations") or []}
        dummies = _dummy_categories(categories, used)
        class_of: dict[Any, int] = {}
        for category in categories:
            if category.get("id") in dummies:
                continue
            name = str(category.get("name"))
            if name not in class_names:
                class_names.append(name)
            class_of[category.get("id")] = class_names.index(name)
        return class_of
