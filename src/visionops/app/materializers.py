"""ZenML materializers for dataset directories, model files and batch outputs."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer
from zenml.metadata.metadata_types import MetadataType

from visionops.batch.predict import PredictionSet
from visionops.batch.report import batch_html
from visionops.core.env import state_dir
from visionops.core.files import copy_tree, link_or_copy
from visionops.data.report import dataset_html
from visionops.data.version import CARD_FILE, DatasetVersion, StagedDataset
from visionops.tasks import get_task
from visionops.training.candidates import ModelFile

DATA_DIR = "data"
COMPLETE = ".complete"  # in a downloaded copy, once every file is in
DATASET_HTML = "dataset.html"  # the dataset report, in the artifact's folder


def work_dir(prefix: str) -> Path:
    """Returns a fresh folder for a step to build a directory artifact in.

    The materializer removes it once the artifact is stored.
    """
    base = state_dir() / "work"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=base))


def _is_local(uri: str) -> bool:
    return "://" not in uri


class _DirectoryMaterializer(BaseMaterializer):
    """Stores a directory file by file: hard links locally, one object each on S3."""

    SKIP_REGISTRATION: ClassVar[bool] = True  # a base class, not for any type

    def _store(self, root: Path) -> Path:
        """Stores `root` under the artifact URI and returns where to read it now."""
        target = os.path.join(self.uri, DATA_DIR)
        scratch = (state_dir() / "work") in root.resolve().parents
        if _is_local(self.uri):
            copy_tree(root, Path(target))
            if scratch:  # the step's scratch folder is no longer needed
                shutil.rmtree(root, ignore_errors=True)
            return Path(target)
        for path in sorted(root.rglob("*")):
            if path.is_file():
                remote = os.path.join(target, path.relative_to(root).as_posix())
                fileio.makedirs(os.path.dirname(remote))
                fileio.copy(str(path), remote, overwrite=True)
        if scratch:  # metadata and visualisations still read it; gone after the step
            self._register_directory_for_deletion_after_step_execution(str(root))
        return root

    def _fetch(self) -> Path:
        source = os.path.join(self.uri, DATA_DIR)
        if _is_local(self.uri):
            if not os.path.isdir(source):
                raise FileNotFoundError(f"Artifact data is missing at {source}.")
            return Path(source)
        key = self.uri.rstrip("/").replace("://", "_").replace("/", "_")
        local = state_dir() / "artifact-cache" / key
        if (local / COMPLETE).is_file():
            return local
        # Downloaded into a folder of its own, marked complete, then renamed into
        # place: a download cut short (or a second one at the same time) never
        # leaves a half copy that reads as complete.
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=local.parent))
        try:
            for dirpath, _dirs, files in fileio.walk(source):
                rel = os.path.relpath(str(dirpath), source)
                for name in files:
                    dst = partial / rel / str(name)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    fileio.copy(
                        os.path.join(str(dirpath), str(name)), str(dst), overwrite=True
                    )
            (partial / COMPLETE).write_text("")
            shutil.rmtree(local, ignore_errors=True)  # an incomplete older copy
            try:
                partial.rename(local)
            except OSError:
                if not (local / COMPLETE).is_file():
                    raise
                # another download finished first: its copy serves
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return local

    def _html(self, name: str, page: str) -> dict[str, VisualizationType]:
        """Writes an HTML visualisation beside the data, for the dashboard."""
        path = os.path.join(self.uri, name)
        with fileio.open(path, "w") as handle:
            handle.write(page)
        return {path: VisualizationType.HTML}


class _FolderMaterializer(_DirectoryMaterializer):
    """For a type that is its folder: made from its `root`, which `save` moves to
    the stored copy (`StagedDataset`, `DatasetVersion`, `PredictionSet`)."""

    SKIP_REGISTRATION: ClassVar[bool] = True  # a base class, not for any type
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: Any) -> None:
        """Stores the directory and points the object at the stored copy."""
        data.root = self._store(data.root)

    def load(self, data_type: type[Any]) -> Any:
        """Returns the stored object (its folder downloaded first for remote stores)."""
        return data_type(self._fetch())


class StagedDatasetMaterializer(_FolderMaterializer):
    """Materializer for `StagedDataset` (a stage's output directory)."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (StagedDataset,)

    def extract_metadata(self, data: StagedDataset) -> dict[str, MetadataType]:
        """Records how many items the stage produced."""
        manifest = json.loads((data.root / "manifest.json").read_text())
        return {"items": len(manifest["items"]), "classes": manifest["class_names"]}


class DatasetVersionMaterializer(_FolderMaterializer):
    """Materializer for `DatasetVersion`, with its card as metadata and an HTML view."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (DatasetVersion,)

    def save_visualizations(self, data: DatasetVersion) -> dict[str, VisualizationType]:
        """Writes the class histogram, sample grid and quarantine table as HTML."""
        return self._html(DATASET_HTML, dataset_html(data, get_task(data.task)))

    def extract_metadata(self, data: DatasetVersion) -> dict[str, MetadataType]:
        """Puts the card's headline figures on the artifact version."""
        card = data.card
        lineage = card.get("lineage")
        merged: dict[str, MetadataType] = {}
        if lineage:  # a merge: where this version comes from (`--status` shows it)
            merged = {
                "parent_version": lineage["parent_version"],
                "parent_hash": lineage["parent_hash"],
                "reviewed": lineage["reviewed"],
                "added": lineage["added"],
                "relabelled": len(lineage["relabelled"]),
                "held_out": len(lineage["held_out"]),
                "refresh_test": lineage["refresh_test"],
            }
        return {
            **merged,
            "dataset_hash": card["hash"],
            "task": data.task,
            "path": str(data.root),
            "source": card["source"],
            "classes": card["class_names"],
            "items_in": card["items_in"],
            "accepted": card["accepted"],
            "quarantined": card["quarantined"],
            "images": {s: v["images"] for s, v in card["splits"].items()},
            "faces_blurred": card["faces"]["faces"],
        }


class ModelFileMaterializer(_DirectoryMaterializer):
    """Materializer for `ModelFile` (weights or an ONNX export), a MODEL artifact."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ModelFile,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL

    def save(self, data: ModelFile) -> None:
        """Stores the file under its own name."""
        target = os.path.join(self.uri, DATA_DIR, data.path.name)
        if _is_local(self.uri):
            link_or_copy(data.path, Path(target))
        else:
            fileio.makedirs(os.path.dirname(target))
            fileio.copy(str(data.path), target, overwrite=True)

    def load(self, data_type: type[Any]) -> ModelFile:
        """Returns the stored file (downloaded first for remote stores)."""
        files = [
            p for p in self._fetch().iterdir() if p.is_file() and p.name != ".complete"
        ]
        if len(files) != 1:
            raise FileNotFoundError(
                f"Expected one model file in {self.uri}, found {files}."
            )
        return ModelFile(files[0])

    def extract_metadata(self, data: ModelFile) -> dict[str, MetadataType]:
        """Records the file's name and size."""
        return {
            "file": data.path.name,
            "size_mb": round(data.path.stat().st_size / 1e6, 3),
        }


class PredictionSetMaterializer(_FolderMaterializer):
    """Materializer for `PredictionSet` (a batch run's outputs), with an HTML view."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (PredictionSet,)

    def save_visualizations(self, data: PredictionSet) -> dict[str, VisualizationType]:
        """Writes the summary, boxes per class, bad files and sample grid as HTML."""
        return self._html("predictions.html", batch_html(data))

    def extract_metadata(self, data: PredictionSet) -> dict[str, MetadataType]:
        """Puts the summary's headline figures on the artifact version."""
        s = data.summary
        keys = ("task", "source", "images_in", "predicted", "bad", "boxes")
        keys += ("images_per_s", "mean_confidence", "mean_probability")
        meta: dict[str, MetadataType] = {k: s[k] for k in keys if s.get(k) is not None}
        meta["per_class"] = s["per_class"]
        if s.get("model"):
            meta["model_version"] = str(s["model"].get("version"))
        return meta


__all__ = [
    "CARD_FILE",
    "DatasetVersionMaterializer",
    "ModelFileMaterializer",
    "PredictionSetMaterializer",
    "StagedDatasetMaterializer",
    "work_dir",
]
