"""The versioned dataset: the task's layout, content hash and dataset card."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionops.core.files import copy_tree, sha256_file
from visionops.data.anonymize import FaceReport
from visionops.data.manifest import Manifest
from visionops.data.split import SPLITS, SplitPlan
from visionops.data.validate import ValidationReport

if TYPE_CHECKING:
    from visionops.engine.task import Task

CARD_FILE = "dataset_card.json"
DATA_YAML = "data.yaml"


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
    def task(self) -> str | None:
        """The name of the task the dataset is labelled for.

        None on a card written before datasets named their task (detection:
        `visionops.tasks.get_task(None)` is the default task).
        """
        task = self.card.get("task")
        return None if task is None else str(task)

    @property
    def hash(self) -> str:
        """The content hash of the files its task's layout hashes."""
        return str(self.card["hash"])

    @property
    def data_yaml(self) -> Path:
        """The `data.yaml` of a detection dataset."""
        return self.root / DATA_YAML


def content_hash(root: Path, hashed: Sequence[str]) -> str:
    """Hashes every file under the `hashed` paths of `root`, paths included.

    The same inputs and settings give the same files, hence the same hash.
    `hashed` is what the task's layout hashes (`Task.layout.HASHED`).
    """
    digest = hashlib.sha256()
    for top in hashed:
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
    task: Task,
    lineage: dict[str, Any] | None = None,
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
        task: The task the staged dataset was validated for; its layout
            places the files (`Task.layout`).
        lineage: A merge's parent and what the batch added
            (`visionops.data.merge.Lineage`), recorded on the card.

    Returns:
        The dataset version; its card adds up: items in = accepted + quarantined.
        The files follow the layout of `task`; the final manifest is kept as
        `manifest.json` (original file names).
    """
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"{dest} is not empty; pass a new directory.")
    manifest = Manifest.read(staged)
    if manifest.task != task.name:
        raise ValueError(
            f"{staged} was validated for {manifest.task or 'no task'}, not {task.name}."
        )
    layout = task.layout
    missing = [i.id for i in manifest.items if i.id not in plan.assignment]
    if missing:
        raise ValueError(
            f"The split plan has no split for {len(missing)} item(s): {missing[:5]}"
        )
    names = manifest.class_names
    layout.write_config(dest, names, [s for s in SPLITS if plan.images[s] > 0])
    for item in manifest.items:
        layout.place_item(staged, item, plan.assignment[item.id], dest, names)
    manifest.write(dest)
    if quarantine is not None and quarantine.is_dir():
        copy_tree(quarantine, dest / "quarantine")

    counts_key = getattr(layout, "COUNTS_KEY", None)

    def counted(split: str) -> dict[str, dict[str, int]]:
        return {counts_key: plan.boxes_per_class[split]} if counts_key else {}

    masks = sum(1 for item in manifest.items if item.mask)
    card = {
        "hash": content_hash(dest, tuple(layout.HASHED)),
        "task": task.name,
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
                "images_per_class": plan.images_per_class.get(s, {}),
                **counted(s),
            }
            for s in SPLITS
        },
        "quarantine": [q.model_dump() for q in validation.quarantined],
        "quarantine_counts": validation.counts_by_reason(),
        "fixes": [f.model_dump() for f in validation.fixes],
        "fix_counts": validation.counts_by_fix(),
        "faces": faces.model_dump(),
        "split": {
            "fractions": plan.fractions,
            "achieved": plan.achieved,
            "seed": plan.seed,
            "group_by": plan.group_by,
        },
        "settings": settings or {},
    }
    if lineage is not None:
        card["lineage"] = lineage
    if masks:
        card["masks"] = {
            "images": masks,
            "ignore": manifest.mask_ignore,
            "background": manifest.mask_background,
        }
    (dest / CARD_FILE).write_text(json.dumps(card, indent=1, sort_keys=True))
    return DatasetVersion(dest)
