"""A reviewed batch back into a dataset: the parent version's items plus the batch's."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from visionops.core.files import link_or_copy, sha256_file
from visionops.data.manifest import IMAGE_SUFFIXES, Item, Manifest
from visionops.data.sources import SourceError, stage_source
from visionops.data.split import SPLITS, item_group
from visionops.data.validate import REASONS, ValidationSettings, validate_dataset
from visionops.data.version import DatasetVersion

if TYPE_CHECKING:
    from visionops.engine.task import Task

REVIEW_CSV = "review.csv"  # beside a review batch (`--pipeline review` writes it)


class MergeError(ValueError):
    """A reviewed batch that must not be merged; one line names the file and why."""


class Lineage(BaseModel):
    """Where a merged dataset version comes from, as its card records it.

    Attributes:
        parent_version: The dataset version merged into (its ZenML version).
        parent_hash: That version's content hash.
        reviewed: Items of the batch that passed validation.
        added: New items, placed in train and val.
        relabelled: Parent items (ids) whose label the batch corrected; each
            stays in its split with the new label.
        unchanged: Batch items the parent already held with the same label.
        held_out: Batch items (ids) left out: their group is in the parent's
            test split, which a merge does not change.
        refresh_test: Everything was split again on purpose
            (`split.refresh_test`), the test split included.
    """

    parent_version: str
    parent_hash: str
    reviewed: int = 0
    added: int = 0
    relabelled: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    held_out: list[str] = Field(default_factory=list)
    refresh_test: bool = False

    def describe(self, version: str | None = None) -> str:
        """`v4 <- v3 + 12 reviewed (10 added, 2 relabelled)`."""
        head = f"v{version} <- " if version else ""
        parts = [f"{self.added} added"]
        if self.relabelled:
            parts.append(f"{len(self.relabelled)} relabelled")
        if self.held_out:
            parts.append(f"{len(self.held_out)} held out (group in test)")
        if self.refresh_test:
            parts.append("test split redone")
        return (
            f"{head}v{self.parent_version} + {self.reviewed} reviewed "
            f"({', '.join(parts)})"
        )


def _placed_files(root: Path, task: Task) -> dict[str, tuple[str, Path]]:
    """Split and placed path of every image of a version, by file name."""
    placed: dict[str, tuple[str, Path]] = {}
    for split in SPLITS:
        for image in task.layout.split_images(root, split):
            placed[image.name] = (split, image)
    return placed


def merge_batch(
    parent: DatasetVersion,
    parent_version: str,
    batch: Path,
    dest: Path,
    *,
    task: Task,
    group_by: str | None = None,
    refresh_test: bool = False,
) -> tuple[dict[str, str], Lineage]:
    """Stages the parent's items plus a validated batch's into `dest`.

    The parent's files are linked as they are (a test image of the parent keeps
    its bytes). A batch image whose bytes the parent holds is no new item: its
    label replaces the parent's (the reviewer's correction wins) and it stays
    in its split. Every other batch item is new, with its class ids renumbered
    to the parent's class list; one whose group is in the parent's test split is
    left out, as train or val would then hold a near copy of a test image.

    Args:
        parent: The dataset version merged into.
        parent_version: Its version, for the lineage.
        batch: The validated (and anonymised) staged batch.
        dest: A new or empty folder for the merged staged dataset.
        task: The parent's task (its layout finds the placed files).
        group_by: The split's group expression.
        refresh_test: Split everything again: no item keeps its split.

    Returns:
        The split each parent item keeps (empty with `refresh_test`), and the
        lineage.

    Raises:
        MergeError: The batch names a class the parent does not have, or is for
            another task.
    """
    old = Manifest.read(parent.root)
    new = Manifest.read(batch)
    if new.task not in (None, task.name):
        raise MergeError(
            f"{new.source}: a {new.task} batch cannot merge into a {task.name} dataset"
        )
    index = _class_index(new.class_names, old.class_names, new.source, parent_version)
    placed = _placed_files(parent.root, task)
    dest.mkdir(parents=True, exist_ok=True)
    items: list[Item] = []
    splits: dict[str, str] = {}
    by_hash: dict[str, int] = {}
    test_groups: set[str] = set()
    for item in old.items:
        split, image = placed[Path(item.image).name]
        link_or_copy(image, dest / item.image)
        label = task.layout.label_file(parent.root, image)
        if item.label and label is not None:
            link_or_copy(label, dest / item.label)
        mask_file = getattr(task.layout, "mask_file", None)
        mask = mask_file(parent.root, image) if item.mask and mask_file else None
        if mask is not None:
            link_or_copy(mask, dest / str(item.mask))
        by_hash[sha256_file(image)] = len(items)
        items.append(item)
        splits[item.id] = split
        if split == "test":
            test_groups.add(item_group(item, group_by))
    lineage = Lineage(
        parent_version=parent_version,
        parent_hash=parent.hash,
        reviewed=len(new.items),
        refresh_test=refresh_test,
    )
    taken = {item.id for item in items}
    for item in new.items:
        text = _renumbered(batch, item, index)
        at = by_hash.get(sha256_file(batch / item.image))
        if at is not None:  # the parent holds these bytes: a label correction
            if _relabel(dest, items, at, item, text, index):
                lineage.relabelled.append(items[at].id)
            else:
                lineage.unchanged.append(item.id)
            continue
        if not refresh_test and item_group(item, group_by) in test_groups:
            lineage.held_out.append(item.id)
            continue
        item_id = item.id
        while item_id in taken:  # two exports may name files alike
            item_id = f"{item_id}_r"
        taken.add(item_id)
        suffix = Path(item.image).suffix
        moved = item.model_copy(
            update={
                "id": item_id,
                "image": f"images/{item_id}{suffix}",
                "label": f"labels/{item_id}.txt" if text is not None else None,
                "mask": f"masks/{item_id}.png" if item.mask else None,
                "class_id": None if item.class_id is None else index[item.class_id],
            }
        )
        link_or_copy(batch / item.image, dest / moved.image)
        if text is not None and moved.label:
            (dest / moved.label).write_text(text)
        if item.mask and moved.mask:
            link_or_copy(batch / item.mask, dest / moved.mask)
        items.append(moved)
        lineage.added += 1
    old.model_copy(update={"items": items, "source": new.source}).write(dest)
    return ({} if refresh_test else splits), lineage


def _class_index(
    names: list[str], parent: list[str], where: str, version: str
) -> list[int]:
    """The parent's class id of each batch class id, by name.

    Raises:
        MergeError: A class the parent does not have.
    """
    unknown = [n for n in names if n not in parent]
    if unknown:
        raise MergeError(
            f"{where}: class {unknown[0]!r} is not a class of dataset v{version} "
            f"({', '.join(parent)}); a merge keeps the parent's classes: relabel the "
            "images, or ingest a full export with the new class without merge_with"
        )
    return [parent.index(n) for n in names]


def _renumbered(batch: Path, item: Item, index: list[int]) -> str | None:
    """The item's label text with the parent's class ids, or None without one."""
    if not item.label:
        return None
    lines = []
    for line in (batch / item.label).read_text().splitlines():
        parts = line.split()
        if parts:
            lines.append(" ".join([str(index[int(float(parts[0]))]), *parts[1:]]))
    return "".join(f"{line}\n" for line in lines)


def _relabel(
    dest: Path,
    items: list[Item],
    at: int,
    item: Item,
    text: str | None,
    index: list[int],
) -> bool:
    """Gives parent item `at` the batch item's label; False when it is the same."""
    held = items[at]
    if item.class_id is not None:
        class_id = index[item.class_id]
        if class_id == held.class_id:
            return False
        items[at] = held.model_copy(update={"class_id": class_id})
        return True
    current = (dest / held.label).read_text() if held.label else ""
    if (text or "") == current:
        return False
    label = held.label or f"labels/{held.id}.txt"
    path = dest / label
    path.unlink(missing_ok=True)  # a link to the parent's file: never write through
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text or "")
    # The new label is the truth: a mask kept for evaluation would contradict it.
    items[at] = held.model_copy(update={"label": label, "mask": None})
    return True


# --- the checks before a merge --------------------------------------------------------


def check_batch(
    batch: Path,
    class_names: list[str],
    *,
    task: Task,
    version: str,
    settings: ValidationSettings,
) -> None:
    """Refuses a reviewed batch that cannot merge into a version with `class_names`.

    A merge stops where ingestion would quarantine: an image a label or
    `review.csv` names but the batch lacks, a class the parent does not have,
    a label value out of range (a class id past the batch's names, a
    coordinate outside 0..1), or anything validation would quarantine.

    Args:
        batch: The reviewed batch's folder (a YOLO export, class folders, ...).
        class_names: The parent version's classes.
        task: The parent's task.
        version: The parent's version, for messages.
        settings: The validation settings of the ingestion.

    Raises:
        MergeError: One line naming the first bad file and the problem.
    """
    _check_images(batch)
    with tempfile.TemporaryDirectory(prefix="merge-check-") as scratch:
        staged = Path(scratch) / "staged"
        try:
            manifest = stage_source(batch, staged, tasks=[task])
        except SourceError as err:
            raise MergeError(str(err).splitlines()[0]) from None
        where = _class_file(batch)
        _class_index(manifest.class_names, class_names, where, version)
        for item in manifest.items:
            _check_label(batch, staged, item, len(manifest.class_names))
        report = validate_dataset(
            staged, Path(scratch) / "valid", settings, 1, task=task
        )
    for bad in report.quarantined:
        raise MergeError(
            f"{batch / bad.source}: {bad.reason}"
            + (f" ({bad.detail})" if bad.detail else "")
            + f": {REASONS.get(bad.reason, '')}"
        )


def _check_images(batch: Path) -> None:
    """A label file or a `review.csv` row whose image is not in the batch."""
    for label in sorted(batch.rglob("labels/**/*.txt")):
        relative = label.relative_to(batch).as_posix()
        stem = relative.replace("labels/", "images/", 1)[: -len(".txt")]
        if not any((batch / f"{stem}{s}").is_file() for s in _suffixes()):
            raise MergeError(
                f"{label}: missing image: no image {stem}.* beside this label"
            )
    review = batch / REVIEW_CSV
    if not review.is_file():
        return
    with review.open(newline="", encoding="utf-8-sig") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            name = (row.get("image") or "").strip()
            found = not name or (batch / name).is_file()
            if not found and not any(batch.rglob(Path(name).name)):
                raise MergeError(
                    f"{review}: line {line}: missing image {name}: not in the batch "
                    "(to leave an image out on purpose, delete its row here too)"
                )


def _suffixes() -> list[str]:
    return [*IMAGE_SUFFIXES, *(s.upper() for s in IMAGE_SUFFIXES)]


def _class_file(batch: Path) -> str:
    """The file that names the batch's classes, for messages."""
    for name in ("data.yaml", "data.yml", "classes.txt"):
        if (batch / name).is_file():
            return str(batch / name)
    return str(batch)


def _check_label(batch: Path, staged: Path, item: Item, classes: int) -> None:
    """A class id past the batch's names, or a coordinate outside 0..1."""
    if not item.label or not (staged / item.label).is_file():
        return
    image = Path(item.source)
    source = batch / image.parent.as_posix().replace("images", "labels", 1)
    where = source / f"{image.stem}.txt"
    if not where.is_file():
        where = batch / item.source
    lines = (staged / item.label).read_text(encoding="utf-8-sig").splitlines()
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(p) for p in parts]
        except ValueError:
            continue  # validation names a malformed line
        cls = values[0]
        if not cls.is_integer() or not 0 <= cls < classes:
            raise MergeError(
                f"{where}: line {number}: class id {parts[0]} is past the "
                f"{classes} class name(s) of the batch"
            )
        bad = [p for p, v in zip(parts[1:], values[1:], strict=True) if not 0 <= v <= 1]
        if bad:  # NaN is never inside 0..1 either
            raise MergeError(
                f"{where}: line {number}: coordinate {bad[0]} is "
                "outside 0..1 (labels are normalised to the image size)"
            )
