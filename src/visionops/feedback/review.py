"""Review batches: the selected images no review took yet, with their pre-labels.

A batch goes to a folder in the dataset's own format (the task's
`review_export`, plus `review.csv`) or to a Picsellia dataset version
(`visionops.feedback.picsellia`); the store marks its images reviewed only once
the whole batch is there, so a batch that fails half-way is made again in full.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from visionops.core.env import project_path
from visionops.core.files import CsvWriter, sha256_file
from visionops.data.merge import REVIEW_CSV
from visionops.data.sources.picsellia import SCHEME
from visionops.engine.review import PreLabel
from visionops.feedback.store import FeedbackStore, OnError, Selected
from visionops.tasks import Task, get_task

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("image", "source", "reason", "confidence", "model", "model_version")
# Class names of a registered model version, or None when the registry has none.
ClassLookup = Callable[[str, str], "list[str] | None"]


class ReviewError(ValueError):
    """The pending images cannot make one batch as asked; the message says why."""


@dataclass(frozen=True)
class BatchItem:
    """One selected image on its way into a batch.

    Attributes:
        selected: The image, its record and the model's answer, as stored.
        prelabels: The answer as pre-labels (the task's `prelabels`).
        size: The image's (width, height) in pixels.
    """

    selected: Selected
    prelabels: list[PreLabel]
    size: tuple[int, int]

    @property
    def name(self) -> str:
        """Its file name in the batch: the record's id, so `review.csv` and the
        store name it alike."""
        return f"{self.selected.id}{self.selected.image.suffix}"

    @property
    def reasons(self) -> list[str]:
        """Why it was selected (`near_threshold`, `empty`, ...)."""
        return [str(r) for r in self.selected.record.get("reasons") or []]

    @property
    def confidence(self) -> float | None:
        """The lowest confidence among its pre-labels (None: the model found
        nothing)."""
        return min((p.confidence for p in self.prelabels), default=None)


class ReviewBatch(BaseModel):
    """What one review run made.

    Attributes:
        target: Where the batch went: its folder, or the Picsellia address;
            None when no batch was made.
        images: The images in it (each now marked reviewed).
        reasons: Images per selection reason.
        model: The registered model that predicted them.
        task: Their task.
        class_names: The classes of the batch, by id.
        waiting: Selected images still waiting for a later batch.
        skipped: One line per file left out (`<path>: <problem>`).
        duplicates: Images left out as copies of one already in the batch (the
            same image predicted twice); marked reviewed with it.
    """

    target: str | None = None
    images: int = 0
    reasons: dict[str, int] = Field(default_factory=dict)
    model: str | None = None
    task: str | None = None
    class_names: list[str] = Field(default_factory=list)
    waiting: int = 0
    skipped: list[str] = Field(default_factory=list)
    duplicates: int = 0

    def summary(self) -> str:
        """What a person reads at the end of the run."""
        # Each skipped file was named in a line of its own as it was found.
        lines = [f"{len(self.skipped)} file(s) skipped."] if self.skipped else []
        if self.target is None:
            lines.append(
                "Nothing selected since the last review: no batch made. Images "
                "the service and batch select wait in the feedback store."
            )
            return "\n".join(lines)
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
        lines.append(
            f"Review batch: {self.images} image(s) of {self.model} ({self.task}) "
            f"-> {self.target}" + (f" (reasons: {why})" if why else "")
        )
        if self.duplicates:
            lines.append(
                f"{self.duplicates} copies of images already in the batch left out."
            )
        if self.waiting:
            lines.append(f"{self.waiting} more wait for the next batch (max_images).")
        if not self.target.startswith(SCHEME):
            lines.append(
                "Correct the pre-labels, then merge the folder into the dataset: "
                f"python run.py --pipeline ingestion --source {self.target} "
                "--set merge_with=latest"
            )
        return "\n".join(lines)


class Problems:
    """The files a review leaves out, one line each, logged as they come."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, path: Path, why: str) -> None:
        """Notes that `path` was left out and why."""
        line = f"{path}: {why}"
        logger.warning("Skipped %s", line)
        self.lines.append(line)


def _model(selected: Selected) -> dict[str, Any]:
    return dict(selected.record.get("model") or {})


def model_name(selected: Selected) -> str:
    """The registered model that predicted a selected image."""
    return str(_model(selected).get("name") or "unknown")


def pending_for(
    store: FeedbackStore, wanted: str | None, problems: OnError
) -> list[Selected]:
    """The selected images no review took, of one model, oldest first.

    Args:
        store: The feedback store.
        wanted: The registered model's name; None: the one model found.
        problems: Told about the files that cannot be read.

    Raises:
        ReviewError: Images of several models wait and none was named, or they
            are of several tasks.
    """
    pending = store.selected(pending=True, on_error=problems)
    models = Counter(model_name(s) for s in pending)
    if wanted is not None:
        pending = [s for s in pending if model_name(s) == wanted]
    elif len(models) > 1:
        ranked = sorted(models.items(), key=lambda kv: (-kv[1], kv[0]))
        found = ", ".join(f"{name} ({n})" for name, n in ranked)
        raise ReviewError(
            f"model.name: selected images of {len(models)} models wait: {found}; "
            "a batch holds one model's images: choose with --set model.name=<name>"
        )
    tasks = {str(s.record.get("task")) for s in pending}
    if len(tasks) > 1:
        raise ReviewError(
            f"The waiting images of {wanted or next(iter(models))} were predicted "
            f"for several tasks ({', '.join(sorted(tasks))}); review them one "
            "model name at a time."
        )
    return pending


def class_names(items: Sequence[BatchItem], lookup: ClassLookup) -> list[str]:
    """The batch's classes by id: the newest model version's (in id order), then
    those only older versions or the pre-labels name.

    Without the registry's names, the pre-labels' classes in the order of their
    ids in the model's answers.
    """
    versions = sorted(
        {
            (model_name(i.selected), str(_model(i.selected).get("version")))
            for i in items
        },
        key=lambda nv: (len(nv[1]), nv[1]),  # "10" after "9"
        reverse=True,
    )
    names: list[str] = []
    for name, version in versions:
        for class_name in lookup(name, version) or []:
            if class_name not in names:
                names.append(class_name)
    seen = sorted(
        {(p.class_id, p.class_name) for i in items for p in i.prelabels},
        key=lambda pair: (pair[0] is None, pair[0] or 0, pair[1]),
    )
    for _, class_name in seen:
        if class_name not in names:
            names.append(class_name)
    return names


def batch_items(
    pending: Sequence[Selected], task: Task, problems: Problems
) -> list[BatchItem]:
    """The pending images with their pre-labels and sizes; an image that cannot
    be opened, or an answer that is not the task's, is left out (told)."""
    from PIL import Image

    items = []
    for selected in pending:
        try:
            with Image.open(selected.image) as image:
                size = image.size
            prelabels = task.prelabels(selected.predictions)
        except (OSError, ValueError, KeyError, TypeError) as err:
            problems(selected.image, f"{type(err).__name__}: {err}")
            continue
        items.append(BatchItem(selected, prelabels, size))
    return items


def new_batch_folder(base: Path, when: datetime) -> Path:
    """`<base>/<time>`, or `<time>-2`, ... when a batch of that second exists."""
    stamp = when.strftime("%Y%m%d-%H%M%S")
    folder, n = base / stamp, 1
    while folder.exists():
        n += 1
        folder = base / f"{stamp}-{n}"
    return folder


def write_folder(
    items: Sequence[BatchItem],
    task: Task,
    names: Sequence[str],
    folder: Path,
    problems: Problems,
) -> list[BatchItem]:
    """Writes the batch into `folder` (made whole or not at all).

    The files go to a hidden sibling first and the folder appears by one rename
    once `review.csv` is written, so a reader never sees half a batch.

    Returns:
        The items written (an image the task cannot place is left out, told).
    """
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    export = task.review_export(partial, names)
    written: list[tuple[BatchItem, Path]] = []
    try:
        for item in items:
            try:
                placed = export.add(
                    item.selected.image, item.name, item.prelabels, item.size
                )
            except (OSError, ValueError) as err:
                problems(item.selected.image, f"{type(err).__name__}: {err}")
                continue
            written.append((item, placed))
        if not written:
            shutil.rmtree(partial, ignore_errors=True)
            return []
        export.finish()
        with (partial / REVIEW_CSV).open("w", newline="", encoding="utf-8") as handle:
            writer = CsvWriter(handle)
            writer.writerow(CSV_COLUMNS)
            writer.writerows(
                _csv_row(item, placed.relative_to(partial)) for item, placed in written
            )
        partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return [item for item, _ in written]


def _csv_row(item: BatchItem, image: Path) -> tuple[Any, ...]:
    record = item.selected.record
    model = _model(item.selected)
    confidence = item.confidence
    return (
        image.as_posix(),
        record.get("source", ""),
        ";".join(item.reasons),
        "" if confidence is None else f"{confidence:.4f}",
        model.get("name", ""),
        model.get("version", ""),
    )


def make_review_batch(
    store: FeedbackStore,
    target: str,
    *,
    model: str | None,
    max_images: int,
    lookup: ClassLookup,
    when: datetime,
    picsellia_client: Any = None,
) -> ReviewBatch:
    """Gathers what was selected since the last review into one labelling batch.

    Args:
        store: The feedback store to read (and mark).
        target: A folder (the batch goes to `<target>/<time>/`, relative to the
            project root) or a `picsellia://` address.
        model: Only this registered model's images; None: the one model found.
        max_images: At most this many, oldest first.
        lookup: Class names of a registered model version.
        when: The batch's time (its folder's name).
        picsellia_client: An SDK client for a Picsellia target (else built from
            the token).

    Returns:
        What was made; `target` None when nothing was waiting.

    Raises:
        ReviewError: The waiting images are of several models and none was
            named (see `pending_for`).
    """
    problems = Problems()
    pending = pending_for(store, model, problems)
    taken, waiting = pending[:max_images], len(pending) - min(len(pending), max_images)
    if not taken:
        return ReviewBatch(model=model, skipped=problems.lines)
    task = get_task(str(taken[0].record.get("task")))
    items, copies = _without_copies(batch_items(taken, task, problems))
    names = class_names(items, lookup)
    where: str | None = None
    if items and target.startswith(SCHEME):
        from visionops.feedback.picsellia import upload_batch

        items = upload_batch(items, target, names, client=picsellia_client)
        where = target
    elif items:
        folder = new_batch_folder(project_path(target), when)
        items = write_folder(items, task, names, folder, problems)
        where = str(folder) if items else None
    if where is not None:  # the whole batch is there: only now is it reviewed
        store.mark_reviewed([i.selected.id for i in items + copies], where)
    return ReviewBatch(
        target=where,
        images=len(items),
        reasons=dict(Counter(r for i in items for r in i.reasons)),
        model=model_name(taken[0]),
        task=task.name,
        class_names=names,
        waiting=waiting,
        skipped=problems.lines,
        duplicates=len(copies) if where is not None else 0,
    )


def _without_copies(items: list[BatchItem]) -> tuple[list[BatchItem], list[BatchItem]]:
    """The items whose image bytes are new to the batch, and the copies (one image
    predicted twice is kept twice, and a dataset must not hold it twice)."""
    seen: set[str] = set()
    unique, copies = [], []
    for item in items:
        digest = sha256_file(item.selected.image)
        (copies if digest in seen else unique).append(item)
        seen.add(digest)
    return unique, copies
