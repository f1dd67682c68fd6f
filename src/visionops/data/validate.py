"""Validates a staged dataset: safe fixes applied, unusable items quarantined."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

from visionops.core import images
from visionops.core.files import ensure_empty_dir
from visionops.core.parallel import pmap
from visionops.data.manifest import Item, Manifest
from visionops.data.masks import MASK_BACKGROUND, MASK_IGNORE

if TYPE_CHECKING:
    from visionops.engine.task import Task

logger = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
QUARANTINE_CSV = "quarantine.csv"

# In check order: an item is quarantined for the first reason that applies.
REASONS: dict[str, str] = {
    "outside_export": "The file is a link (or a path in the export's own files) "
    "that leads outside the export, which is never read; copy the file into the "
    "export.",
    "image_missing": "The manifest names an image file that does not exist; "
    "re-export the source or drop the item.",
    "zero_byte": "The image file is empty: a failed download, or the placeholder "
    "staging writes for an image the source lists but lacks; supply the file.",
    "unreadable": "The bytes are not a decodable image (e.g. an HTML error page "
    "saved as .jpg); replace the file.",
    "truncated": "The image stops before its end (partial download or copy); "
    "download it again.",
    "unsupported_format": "The image decodes but is not JPEG, PNG, BMP, WebP or "
    "TIFF, which training does not read; convert it.",
    "image_too_small": "The image is under 10 px on a side, which Ultralytics "
    "rejects; drop it or replace it with the full-size original.",
    "label_missing": "The image has no label file; annotate it, or export it "
    "with an empty label file if it truly shows no object.",
    "label_empty": "The label file has no boxes (a background image); draw the "
    "objects, or keep it as a negative with --set validation.keep_background=true.",
    "label_malformed": "A label line is not `cls cx cy w h` (nor a polygon "
    "`cls x1 y1 x2 y2 x3 y3 ...`) or is not numeric; fix the export format.",
    "polygon_too_few_points": "Segmentation: a polygon has fewer than 3 distinct "
    "points (a `cls cx cy w h` box line included); redraw it as a polygon.",
    "label_nan": "A label value is NaN or infinite; re-export the annotations.",
    "box_out_of_range": "A box lies outside the image by more than "
    "clip_tolerance; coordinates are probably not normalised to [0, 1].",
    "unknown_class": "A class id is not an integer in [0, number of classes); "
    "check the class list matches the labels.",
    "polygon_self_intersecting": "Segmentation: two edges of a polygon cross "
    "(a bow tie); redraw it in the annotation tool.",
    "polygon_zero_area": "Segmentation: a polygon encloses no area (its points "
    "lie on one line); delete or redraw it.",
    "zero_area_box": "A box has (near) zero width or height after clipping; "
    "delete it in the annotation tool.",
    "mask_unreadable": "Segmentation: the mask image does not decode, or has "
    "colours instead of one channel of class indices; export it as a greyscale "
    "or palette PNG.",
    "mask_size_mismatch": "Segmentation: the mask's size differs from its "
    "image's; export the mask at the image's resolution.",
    "mask_unknown_value": "Segmentation: the mask holds values that are neither "
    "a class index, the ignore value nor the background value; fix the class "
    "list (or its `ignore`) or the mask.",
    "label_conflict": "The same image bytes are labelled with different classes "
    "(named in detail); every copy is left out until the labels agree.",
    "duplicate_image": "The image bytes are identical to an earlier accepted "
    "item (named in detail), which is kept; duplicates leak across splits.",
}

FIXES: dict[str, str] = {
    "exif_rotation": "EXIF orientation applied to the pixels and the tag removed.",
    "extension_mismatch": "File renamed to the extension of its real format.",
    "jpeg_trailer_removed": "Bytes after the JPEG end-of-image marker removed.",
    "box_clipped": "Box corners slightly outside the image clipped to [0, 1].",
    "polygon_to_box": "Polygon label line replaced by its bounding box.",
    "polygon_clipped": "Polygon points slightly outside the image clipped to "
    "[0, 1] (segmentation).",
    "mask_to_polygons": "Mask image turned into one polygon per connected region "
    "(segmentation); the mask is kept for evaluation.",
    "duplicate_label_line": "Repeated label lines removed.",
    "label_bom_removed": "UTF-8 byte order mark removed from the label file.",
}

# PIL format -> (extension used when renaming, extensions that already match).
_FORMAT_SUFFIXES: dict[str, tuple[str, frozenset[str]]] = {
    "JPEG": (".jpg", frozenset({".jpg", ".jpeg"})),
    # Cameras write multi-picture JPEGs (PIL says MPO) with a .jpg name.
    "MPO": (".jpg", frozenset({".jpg", ".jpeg", ".mpo"})),
    "PNG": (".png", frozenset({".png"})),
    "BMP": (".bmp", frozenset({".bmp"})),
    "WEBP": (".webp", frozenset({".webp"})),
    "TIFF": (".tif", frozenset({".tif", ".tiff"})),
}
_MIN_SIDE = 10  # Ultralytics drops images smaller than this on either side.
_EXIF_ORIENTATION = 0x0112


class ValidationSettings(BaseModel):
    """How strict validation is.

    Attributes:
        clip_tolerance: Boxes whose corners lie outside [0, 1] by at most this
            much are clipped; further out, the item is quarantined.
        keep_background: Keep images whose label file is empty (negatives)
            instead of quarantining them as `label_empty`.
        min_box_size: A box whose normalised width or height (after clipping)
            is at or below this is a zero-area box.
    """

    model_config = ConfigDict(extra="forbid")

    clip_tolerance: float = Field(default=0.02, ge=0.0, le=0.5)
    keep_background: bool = False
    min_box_size: float = Field(default=0.0, ge=0.0, lt=1.0)


class QuarantinedItem(BaseModel):
    """An item left out of the validated dataset, and why."""

    id: str
    source: str
    reason: str
    detail: str


class Fix(BaseModel):
    """A change made to an accepted item."""

    id: str
    source: str
    fix: str
    detail: str


class ValidationReport(BaseModel):
    """What validation accepted, fixed and quarantined."""

    items_in: int
    accepted: int
    quarantined: list[QuarantinedItem] = Field(default_factory=list)
    fixes: list[Fix] = Field(default_factory=list)

    def counts_by_reason(self) -> dict[str, int]:
        """Returns quarantined item counts per reason, in check order."""
        counts = Counter(q.reason for q in self.quarantined)
        return {reason: counts[reason] for reason in REASONS if counts[reason]}

    def counts_by_fix(self) -> dict[str, int]:
        """Returns the number of items that received each fix."""
        counts = Counter(f.fix for f in self.fixes)
        return {fix: counts[fix] for fix in FIXES if counts[fix]}


class Reject(Exception):
    """A check's verdict, a task's label check's too: quarantine for `reason`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Upright:
    """The size of an accepted image as written, and the EXIF turn applied."""

    width: int
    height: int
    orientation: int = 1


@dataclass(frozen=True)
class LabelCheck:
    """What a task's label check (`Task.check_labels`) knows besides the item.

    Attributes:
        src: The staged dataset the item's paths are relative to.
        settings: How strict validation is.
        num_classes: Class ids lie in [0, num_classes).
        upright: The item's image as validation writes it.
        mask_ignore: The ignored value of the source's masks, if any.
        mask_background: The no-object value of the source's masks, if any.
    """

    src: Path
    settings: ValidationSettings
    num_classes: int
    upright: Upright
    mask_ignore: int | None = None
    mask_background: int | None = None

    def reject_out_of_range(
        self, number: int, coordinates: Sequence[float], what: str
    ) -> None:
        """Rejects a label line with a normalised coordinate beyond [0, 1] by
        more than the clip tolerance (within it, the task clips).

        Args:
            number: The line's number.
            coordinates: Its coordinates.
            what: What a coordinate is a part of, for the detail (`corner`).

        Raises:
            Reject: `box_out_of_range`.
        """
        low, high = min(coordinates), max(coordinates)
        tolerance = self.settings.clip_tolerance
        if low < -tolerance or high > 1 + tolerance:
            raise Reject(
                "box_out_of_range",
                f"line {number}: {what} at {low if low < 0 else high:.4g} is "
                f"beyond [0, 1] by more than {tolerance}",
            )

    def reject_unknown_classes(self, rows: list[tuple[int, list[float]]]) -> None:
        """Rejects the first label line whose class (its first value) is no
        class id of the dataset.

        Args:
            rows: Each line's number and its values.

        Raises:
            Reject: `unknown_class`.
        """
        for number, values in rows:
            cls = values[0]
            if not cls.is_integer() or not 0 <= cls < self.num_classes:
                raise Reject(
                    "unknown_class",
                    f"line {number}: class {cls:g} not in 0..{self.num_classes - 1}",
                )


@dataclass
class CheckedLabels:
    """What a task's label check accepted.

    Attributes:
        item: The item, its `label` pointing at the label written for it.
        writes: Relative path -> bytes of the label files to write.
        fixes: (fix name, detail) per fix made, names from `FIXES`.
    """

    item: Item
    writes: dict[str, bytes] = field(default_factory=dict)
    fixes: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Outcome:
    """What a worker decided about one item, and the files it wrote."""

    item: Item
    reason: str | None = None
    detail: str = ""
    sha256: str | None = None
    fixes: list[tuple[str, str]] = field(default_factory=list)
    written: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Job:
    item: Item
    src: Path
    dest: Path
    settings: ValidationSettings
    num_classes: int
    task: Task
    mask_ignore: int | None = None
    mask_background: int | None = None


def validate_dataset(
    src: Path,
    dest: Path,
    settings: ValidationSettings,
    workers: int = 1,
    *,
    task: Task,
) -> ValidationReport:
    """Writes the usable items of a staged dataset to a new staged dataset.

    Accepted items (fixed where a fix is safe) go to `dest` with a manifest in
    the source order. Every other item is copied to
    `dest/quarantine/<reason>/` and listed in `dest/quarantine/quarantine.csv`.

    Args:
        src: Staged dataset directory to read (not modified).
        dest: New or empty directory for the validated dataset.
        settings: Tolerances and what to keep.
        workers: Processes that check items in parallel.
        task: The task the dataset is for; it checks each item's labels
            (`Task.check_labels`) and is recorded on the manifest.

    Returns:
        Counts, the quarantined items and the fixes applied.

    Raises:
        FileNotFoundError: If `src` has no manifest.json.
        ValueError: If `dest` is not empty, or the staged labels are not the
            kind `task` takes.
    """
    src, dest = Path(src), Path(dest)
    manifest = Manifest.read(src)
    if manifest.task not in (None, task.name) or manifest.kind not in task.label_kinds:
        raise ValueError(
            f"{src} holds {manifest.kind} staged for {manifest.task or 'no task'}; "
            f"the {task.name} task cannot validate it."
        )
    ensure_empty_dir(dest)
    jobs = [
        _Job(
            item,
            src,
            dest,
            settings,
            len(manifest.class_names),
            task,
            manifest.mask_ignore,
            manifest.mask_background,
        )
        for item in manifest.items
    ]

    accepted: list[Item] = []
    quarantined: list[QuarantinedItem] = []
    fixes: list[Fix] = []
    first_seen: dict[str, str] = {}
    outcomes = list(pmap(_check_item, jobs, workers=workers, progress="Validating"))
    # Only the parent sees every hash: it finds the images labelled twice.
    labels_of: dict[str, dict[int | None, str]] = {}
    for outcome in outcomes:
        if outcome.reason is None and outcome.sha256 is not None:
            labels_of.setdefault(outcome.sha256, {}).setdefault(
                outcome.item.class_id, outcome.item.id
            )
    for outcome in outcomes:
        item = outcome.item
        if outcome.reason is None and len(labels_of.get(outcome.sha256 or "", {})) > 1:
            others = labels_of[outcome.sha256 or ""]
            names = manifest.class_names
            outcome.reason = "label_conflict"
            outcome.detail = "same bytes as " + ", ".join(
                f"{other} ({names[c] if c is not None else '?'})"
                for c, other in others.items()
                if other != item.id
            )
        elif outcome.reason is None and outcome.sha256 in first_seen:
            kept = first_seen[outcome.sha256]
            outcome.reason, outcome.detail = "duplicate_image", f"same bytes as {kept}"
        if outcome.reason is not None and outcome.written:
            # Undo what the worker wrote for an item only the parent rejects.
            for relative in outcome.written:
                (dest / relative).unlink()
            _quarantine_files(item, src, dest / QUARANTINE_DIR / outcome.reason)
        if outcome.reason is not None:
            quarantined.append(
                QuarantinedItem(
                    id=item.id,
                    source=item.source,
                    reason=outcome.reason,
                    detail=outcome.detail,
                )
            )
            continue
        assert outcome.sha256 is not None
        first_seen[outcome.sha256] = item.id
        accepted.append(item)
        fixes.extend(
            Fix(id=item.id, source=item.source, fix=name, detail=detail)
            for name, detail in outcome.fixes
        )

    update: dict[str, object] = {"items": accepted, "task": task.name}
    if any(item.mask for item in manifest.items):
        # Validation rewrites every mask with these two values (see _check_mask).
        update.update(mask_ignore=MASK_IGNORE, mask_background=MASK_BACKGROUND)
    manifest.model_copy(update=update).write(dest)
    _write_quarantine_csv(dest / QUARANTINE_DIR, quarantined)
    report = ValidationReport(
        items_in=len(jobs),
        accepted=len(accepted),
        quarantined=quarantined,
        fixes=fixes,
    )
    logger.info(
        "Validated %s: %d in, %d accepted, quarantined %s, fixes %s",
        src,
        report.items_in,
        report.accepted,
        report.counts_by_reason(),
        report.counts_by_fix(),
    )
    return report


def _write_quarantine_csv(folder: Path, rows: list[QuarantinedItem]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / QUARANTINE_CSV).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "source", "reason", "detail"])
        writer.writerows([q.id, q.source, q.reason, q.detail] for q in rows)


def _quarantine_files(item: Item, src: Path, folder: Path) -> None:
    """Copies the item's original image, label and mask (those that exist).

    Images keep the staged name (`<id><image suffix>`), labels `<id>.txt`,
    masks `<id>.mask.png`; an image whose name would be its label's is kept
    as `<id>.image<suffix>`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    label_name = Path(item.label).name if item.label else None
    for relative in (item.image, item.label, item.mask):
        if relative and (src / relative).is_file():
            name = Path(relative).name
            if relative == item.image and name == label_name:
                name = f"{Path(name).stem}.image{Path(name).suffix}"
            if relative == item.mask:
                name = f"{item.id}.mask.png"
            shutil.copyfile(src / relative, folder / name)


def _check_item(job: _Job) -> _Outcome:
    """Checks one item and writes it to the accepted set or to quarantine."""
    item, src, dest = job.item, job.src, job.dest
    outcome = _Outcome(item=item)
    try:
        if item.problem:
            reason, _, detail = item.problem.partition(": ")
            raise Reject(reason if reason in REASONS else "image_missing", detail)
        image_bytes, image_rel, image_fixes, digest, upright = _check_image(src, item)
        outcome.sha256 = digest
        check = LabelCheck(
            src,
            job.settings,
            job.num_classes,
            upright,
            job.mask_ignore,
            job.mask_background,
        )
        checked = job.task.check_labels(item, check)
        item = checked.item
        writes = {image_rel: image_bytes, **checked.writes}
    except Reject as reject:
        outcome.reason, outcome.detail = reject.reason, reject.detail
        _quarantine_files(item, src, dest / QUARANTINE_DIR / reject.reason)
        return outcome

    for relative, data in writes.items():
        path = dest / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        # Plain copies, never hard links: tools that "repair" images in place
        # would otherwise change the source dataset too.
        path.write_bytes(data)
    outcome.item = item.model_copy(update={"image": image_rel})
    outcome.written = list(writes)
    outcome.fixes = image_fixes + checked.fixes
    return outcome


def _check_image(
    src: Path, item: Item
) -> tuple[bytes, str, list[tuple[str, str]], str, Upright]:
    """Decodes the image once; returns its output bytes, path, fixes, hash, size.

    Raises:
        Reject: With the first image reason that applies.
    """
    path = src / item.image
    if not path.is_file():
        raise Reject("image_missing", f"{item.image} not found")
    data = path.read_bytes()
    try:  # the one format sniffing and truncation check (`visionops.core.images`)
        sniffed = images.check(data)
    except images.ImageError as err:
        detail = f"{item.image} is empty" if err.reason == images.ZERO_BYTE else None
        raise Reject(err.reason, detail or err.detail) from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        image = Image.open(io.BytesIO(data), formats=[sniffed])
    except UnidentifiedImageError:
        raise Reject("unreadable", "not a recognised image format") from None
    except Exception as error:  # PIL raises many types on hostile headers
        raise Reject("unreadable", f"{type(error).__name__}: {error}") from None
    try:
        image.load()
    except OSError as error:
        reason = "truncated" if "truncated" in str(error) else "unreadable"
        raise Reject(reason, str(error)) from None
    except Exception as error:
        raise Reject("unreadable", f"{type(error).__name__}: {error}") from None

    fixes: list[tuple[str, str]] = []
    image_format = image.format or sniffed
    if image_format not in _FORMAT_SUFFIXES:
        raise Reject("unsupported_format", f"{image_format} image")
    if image_format in ("JPEG", "MPO") and not data.endswith(images.JPEG_EOI):
        end = images.jpeg_end(data)
        if end is None:  # pragma: no cover - images.check said truncated
            raise Reject("truncated", "JPEG has no end-of-image marker")
        # Ultralytics re-encodes (quality 100) any JPEG not ending in EOI, in
        # place, so trailing bytes are cut here instead.
        fixes.append(("jpeg_trailer_removed", f"{len(data) - end} bytes removed"))
        data = data[:end]

    width, height = image.size
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    turned = orientation in range(2, 9)
    if turned:
        upright = ImageOps.exif_transpose(image)
        data = _encode(upright, image)
        fixes.append(("exif_rotation", f"orientation {orientation} applied"))
        width, height = upright.size
    if min(width, height) < _MIN_SIDE:
        raise Reject("image_too_small", f"{width}x{height} px")

    relative = item.image
    suffix = Path(relative).suffix.lower()
    canonical, matching = _FORMAT_SUFFIXES[image_format]
    if suffix not in matching:
        relative = str(Path(relative).with_suffix(canonical))
        fixes.append(
            ("extension_mismatch", f"{image_format} named {suffix or '(none)'}")
        )
    upright = Upright(width, height, orientation if turned else 1)
    return data, relative, fixes, digest, upright


def _encode(image: Image.Image, original: Image.Image) -> bytes:
    """Encodes `image` in the format of `original`, keeping EXIF and colour profile."""
    image_format = "JPEG" if original.format == "MPO" else original.format
    options: dict[str, object] = {"exif": image.info.get("exif", b"")}
    if original.info.get("icc_profile"):
        options["icc_profile"] = original.info["icc_profile"]
    if image_format == "JPEG":
        options["quality"] = 95
        sampling = JpegImagePlugin.get_sampling(original)
        if sampling >= 0:
            options["subsampling"] = sampling
    elif image_format == "WEBP":
        options["quality"] = 95
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def read_label(
    item: Item, check: LabelCheck
) -> tuple[bytes, list[tuple[str, str]], list[tuple[int, list[str]]]]:
    """Reads an item's label file for a task's label check.

    The bytes returned are what later stages read, so anything decoding
    forgave (a byte order mark) is removed from them.

    Returns:
        The label bytes, the fixes made to them and the fields of each
        non-blank line with its line number; no lines for a kept background.

    Raises:
        Reject: `label_missing`, `label_malformed` or `label_empty`.
    """
    if item.label is None or not (check.src / item.label).is_file():
        raise Reject("label_missing", item.label or "no label in the source")
    raw = (check.src / item.label).read_bytes()
    bom: list[tuple[str, str]] = []
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
        bom = [("label_bom_removed", "3 bytes")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Reject("label_malformed", "label file is not UTF-8 text") from None
    lines = [
        (number, line.split())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    if not lines and not check.settings.keep_background:
        raise Reject("label_empty", "no boxes (background image)")
    return raw, bom, lines
