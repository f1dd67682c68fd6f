"""The versioned dataset: YOLO layout, data.yaml, content hash and dataset card."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from visionops.data.anonymize import FaceReport
from visionops.data.manifest import Manifest
from visionops.data.split import SPLITS, SplitPlan
from visionops.data.validate import ValidationReport
from visionops.fsutil import copy_tree, link_or_copy, sha256_file

CARD_FILE = "dataset_card.json"
DATA_YAML = "data.yaml"
HASHED = ("images", "labels", DATA_YAML)


@dataclass
class StagedDataset:
    """A staged dataset directory (images/, labels/, manifest.json) between stages."""

    root: Path


@dataclass
class DatasetVersion:
    """A finished, versioned dataset directory in YOLO layout with its card."""

    root: Path

    @property
    def card(self) -> dict[str, Any]:
        """The dataset card, read from `dataset_card.json`."""
        return load_card(self.root)

    @property
    def task(self) -> str:
        """The task the dataset is labelled for: detect, classify or segment."""
        return str(self.card.get("task", "detect"))

    @property
    def hash(self) -> str:
        """The content hash of images, labels and data.yaml."""
        return str(self.card["hash"])

    @property
    def data_yaml(self) -> Path:
        """The `data.yaml` to hand to Ultralytics."""
        return self.root / DATA_YAML

    @property
    def ultralytics_data(self) -> Path:
        """What to pass as Ultralytics `data=`: data.yaml, or the root of a folder
        per class and split (classification)."""
        return self.data_yaml if self.data_yaml.is_file() else self.root

    def split_images(self, split: str) -> list[Path]:
        """The image files of one split, sorted (none for a missing split)."""
        detect = self.root / "images" / split
        folder = detect if detect.is_dir() else self.root / split
        return sorted(p for p in folder.rglob("*") if p.is_file())


def content_hash(root: Path) -> str:
    """Hashes every file under images/, labels/ and data.yaml, paths included.

    The same inputs and settings give the same files, hence the same hash.
    """
    digest = hashlib.sha256()
    for top in HASHED:
        base = root / top
        files = (
            [base]
            if base.is_file()
            else sorted(p for p in base.rglob("*") if p.is_file())
        )
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(sha256_file(path).encode() + b"\n")
    return digest.hexdigest()


def load_card(root: Path) -> dict[str, Any]:
    """Reads the dataset card of a versioned dataset directory."""
    path = root / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{root} is not a versioned dataset: {CARD_FILE} is missing."
        )
    return json.loads(path.read_text())


def build_dataset_version(
    staged: Path,
    plan: SplitPlan,
    dest: Path,
    *,
    validation: ValidationReport,
    faces: FaceReport,
    quarantine: Path | None = None,
    settings: dict[str, Any] | None = None,
) -> DatasetVersion:
    """Writes the versioned dataset at `dest` and returns it.

    Args:
        staged: The final staged dataset (validated and anonymised).
        plan: The split assignment of every staged item.
        dest: An empty or missing directory to write to.
        validation: The validation report (quarantine and fixes go on the card).
        faces: The anonymisation report.
        quarantine: The `quarantine/` folder of the validated dataset, copied over
            so the quarantined files travel with the version.
        settings: The ingestion settings, recorded on the card.

    Returns:
        The dataset version; its card adds up: items in = accepted + quarantined.
    """
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"{dest} is not empty; pass a new directory.")
    manifest = Manifest.read(staged)
    missing = [i.id for i in manifest.items if i.id not in plan.assignment]
    if missing:
        raise ValueError(
            f"The split plan has no split for {len(missing)} item(s): {missing[:5]}"
        )
    for item in manifest.items:
        split = plan.assignment[item.id]
        image = staged / item.image
        link_or_copy(image, dest / "images" / split / image.name)
        label_dst = dest / "labels" / split / f"{Path(image.name).stem}.txt"
        if item.label:
            link_or_copy(staged / item.label, label_dst)
        else:  # a kept background image: Ultralytics reads an empty file as "no boxes"
            label_dst.parent.mkdir(parents=True, exist_ok=True)
            label_dst.write_text("")
    data_yaml = {
        "names": dict(enumerate(manifest.class_names)),
        "nc": len(manifest.class_names),
        # No `path:` key: Ultralytics then resolves these next to data.yaml, so the
        # folder can move between machines and artifact stores.
        **{s: f"images/{s}" for s in SPLITS if plan.images[s] > 0},
    }
    dest.mkdir(parents=True, exist_ok=True)
    (dest / DATA_YAML).write_text(yaml.safe_dump(data_yaml, sort_keys=False))
    if quarantine is not None and quarantine.is_dir():
        copy_tree(quarantine, dest / "quarantine")

    card = {
        "hash": content_hash(dest),
        "task": manifest.task,
        "source": manifest.source,
        "source_format": manifest.source_format,
        "class_names": manifest.class_names,
        "items_in": validation.items_in,
        "accepted": validation.accepted,
        "quarantined": len(validation.quarantined),
        "splits": {
            s: {
                "images": plan.images[s],
                "groups": plan.groups[s],
                "boxes_per_class": plan.boxes_per_class[s],
            }
            for s in SPLITS
        },
        "quarantine": [q.model_dump() for q in validation.quarantined],
        "quarantine_counts": validation.counts_by_reason(),
        "fixes": [f.model_dump() for f in validation.fixes],
        "fix_counts": validation.counts_by_fix(),
        "faces": faces.model_dump(),
        "split": {"fractions": plan.fractions, "seed": plan.seed},
        "settings": settings or {},
    }
    (dest / CARD_FILE).write_text(json.dumps(card, indent=1, sort_keys=True))
    return DatasetVersion(dest)
