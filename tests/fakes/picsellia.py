"""A Picsellia SDK client that serves local files the way SDK 6.37 does, and
records what a review batch sends (uploads, assets, labels, pre-annotations)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from picsellia.exceptions import ResourceNotFoundError

# The SDK writes exports to `<target>/<organization id>/annotations/...`.
ORGANIZATION_ID = "0192f6db-86b6-784c-80e6-163debb242d5"


@dataclass
class FakeAssets:
    """`MultiAsset`: `download` writes each asset under its filename."""

    files: dict[str, bytes]
    downloads: list[str] = field(default_factory=list)

    def download(
        self,
        target_path: str | Path = "./",
        force_replace: bool = False,
        max_workers: int | None = None,
        use_id: bool = False,
    ) -> None:
        target = Path(target_path)
        target.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            path = target / name
            if path.exists() and not force_replace:
                continue
            path.write_bytes(data)
            self.downloads.append(name)


@dataclass(frozen=True)
class FakeLabel:
    """`Label`: a class of a dataset version."""

    name: str


@dataclass
class FakeAnnotation:
    """`Annotation`: the shapes created in it, with their label names.

    Like the SDK (beartype), rectangles take whole pixels and polygons lists of
    whole-pixel points; anything else is refused.
    """

    rectangles: list[tuple[int, int, int, int, str]] = field(default_factory=list)
    polygons: list[tuple[list[list[int]], str]] = field(default_factory=list)
    classifications: list[str] = field(default_factory=list)

    def create_multiple_rectangles(self, rectangles: list[tuple]) -> list[Any]:
        assert len(rectangles) > 0, "Please give at least one rectangle"
        for *xywh, label in rectangles:
            if not all(type(v) is int for v in xywh) or not isinstance(
                label, FakeLabel
            ):
                raise TypeError(f"rectangle {rectangles!r}: ints and a Label")
            self.rectangles.append((*xywh, label.name))
        return list(rectangles)

    def create_multiple_polygons(self, polygons: list[tuple]) -> list[Any]:
        assert len(polygons) > 0, "Please give at least one polygon"
        for coords, label in polygons:
            if not all(type(v) is int for point in coords for v in point):
                raise TypeError(f"polygon {coords!r}: lists of ints")
            self.polygons.append((coords, label.name))
        return list(polygons)

    def create_multiple_classifications(self, labels: list[FakeLabel]) -> list[Any]:
        assert len(labels) > 0, "Please give at least one polygon"
        self.classifications += [label.name for label in labels]
        return list(labels)


@dataclass
class FakeAsset:
    """`Asset`: its annotations."""

    filename: str
    annotations: list[FakeAnnotation] = field(default_factory=list)

    def create_annotation(self, duration: float | int = 0.0) -> FakeAnnotation:
        self.annotations.append(FakeAnnotation())
        return self.annotations[-1]


@dataclass(frozen=True)
class FakeData:
    """`Data`: an uploaded file."""

    filename: str


@dataclass
class FakeMultiData:
    """`MultiData`: several uploaded files (`items`)."""

    items: list[FakeData]


@dataclass
class FakeDatalake:
    """`Datalake`: `upload_data` records its arguments; a file named in `failing`
    is not uploaded, and, as the SDK does, that only logs."""

    uploads: list[dict[str, Any]] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)

    def upload_data(
        self, filepaths: Any, tags: list[Any] | None = None, **kwargs: Any
    ) -> FakeData | FakeMultiData:
        paths = [filepaths] if isinstance(filepaths, str | Path) else list(filepaths)
        self.uploads.append({"filepaths": [str(p) for p in paths], "tags": tags})
        done = [
            FakeData(Path(p).name) for p in paths if Path(p).name not in self.failing
        ]
        if not done:
            raise RuntimeError("Nothing has been uploaded.")  # NothingDoneError
        return done[0] if len(done) == 1 else FakeMultiData(done)


@dataclass
class FakeDatasetVersion:
    """`DatasetVersion` with its assets and what its exports contain.

    Attributes:
        coco: The COCO document the COCO export writes.
        yolo_names: Class names written to the YOLO export's data.yaml.
        yolo_labels: Label text per image stem in the YOLO export.
        coco_zipped: Export COCO as a zip instead of a bare json.
    """

    id: str
    dataset: str
    version: str
    files: dict[str, bytes]
    coco: dict[str, Any] = field(default_factory=dict)
    yolo_names: list[str] = field(default_factory=list)
    yolo_labels: dict[str, str] = field(default_factory=dict)
    coco_zipped: bool = False
    exports: list[str] = field(default_factory=list)
    # What `add_data` was given: (data file names, asset tags) per call.
    added: list[tuple[list[str], list[str]]] = field(default_factory=list)
    # Label names in the order `get_or_create_label` created them.
    labels: list[str] = field(default_factory=list)
    # The assets `add_data` made, by file name.
    assets_by_name: dict[str, FakeAsset] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.assets = FakeAssets(self.files)

    def get_or_create_label(self, name: str) -> FakeLabel:
        if name not in self.labels:
            self.labels.append(name)
        return FakeLabel(name)

    def add_data(
        self, data: Any, tags: list[Any] | None = None, wait: bool | None = True
    ) -> None:
        items = [data] if isinstance(data, FakeData) else list(data)
        if not items:
            raise ValueError("data parameter cannot be empty")  # as the SDK
        self.added.append(([d.filename for d in items], list(tags or [])))
        for d in items:
            self.assets_by_name[d.filename] = FakeAsset(d.filename)

    def find_asset(
        self,
        data: FakeData | None = None,
        filename: str | None = None,
        object_name: str | None = None,
        id: Any = None,
    ) -> FakeAsset:
        name = data.filename if data is not None else filename
        if name not in self.assets_by_name:
            raise ResourceNotFoundError(f"No asset {name} in {self.id}")
        return self.assets_by_name[name]

    def list_assets(self) -> FakeAssets:
        return self.assets

    def export_annotation_file(
        self,
        annotation_file_type: Any,
        target_path: str | Path = "./",
        assets: Any = None,
        worker: Any = None,
        status: Any = None,
        force_replace: bool = True,
        export_video: bool = False,
        use_id: bool | None = None,
        export_key: Any = None,
    ) -> str:
        kind = str(annotation_file_type).upper()
        self.exports.append(kind)
        folder = Path(target_path) / ORGANIZATION_ID / "annotations"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{self.id}_annotations"
        if kind == "COCO" and not self.coco_zipped:
            path = folder / f"{stem}.json"
            path.write_text(json.dumps(self.coco))
            return str(path)
        path = folder / f"{stem}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            if kind == "COCO":
                zf.writestr("annotations.json", json.dumps(self.coco))
            elif kind == "YOLO":
                zf.writestr("data.yaml", yaml.safe_dump({"names": self.yolo_names}))
                for name, text in self.yolo_labels.items():
                    zf.writestr(f"{name}.txt", text)
            else:
                raise ValueError(f"export type {kind} is not faked")
        return str(path)


@dataclass
class FakeDataset:
    """`Dataset`: versions looked up by version name."""

    name: str
    versions: list[FakeDatasetVersion]

    def get_version(self, version: str) -> FakeDatasetVersion:
        for candidate in self.versions:
            if candidate.version == version:
                return candidate
        raise ResourceNotFoundError(f"No version {version} in {self.name}")


@dataclass
class FakePicselliaClient:
    """`picsellia.Client` over a list of dataset versions."""

    versions: list[FakeDatasetVersion]
    datalake: FakeDatalake = field(default_factory=FakeDatalake)

    def get_datalake(self, id: Any = None, name: str | None = None) -> FakeDatalake:
        return self.datalake

    def get_dataset_version_by_id(self, id: Any) -> FakeDatasetVersion:
        for version in self.versions:
            if version.id == str(id):
                return version
        raise ResourceNotFoundError(f"No dataset version with id {id}")

    def get_dataset(self, name: str) -> FakeDataset:
        versions = [v for v in self.versions if v.dataset == name]
        if not versions:
            raise ResourceNotFoundError(f"No dataset named {name}")
        return FakeDataset(name, versions)
