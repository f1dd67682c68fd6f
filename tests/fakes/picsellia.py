"""A Picsellia SDK client that serves local files the way SDK 6.37 does."""

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

    def __post_init__(self) -> None:
        self.assets = FakeAssets(self.files)

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
