"""Where production's prediction records and selected images are kept, and read back.

One store per deployment target, a folder (the active stack's artifact root decides
it at deployment; `.visionops/feedback` on the local stack):

```
<root>/records/<YYYY-MM-DD>/<source>-<host>-<pid>.jsonl   one JSON object per image
<root>/features/<YYYY-MM-DD>/<source>-<host>-<pid>.jsonl  its drift features, by id
<root>/selected/<YYYY-MM-DD>/<id>.jpg                      the image, faces blurred
<root>/selected/<YYYY-MM-DD>/<id>.json                     its record + predictions
<root>/reviews/<stamp>.json                                what one review batch took
```

Each writing process appends to a file of its own (no lock between workers, no
interleaved lines); a day is one folder, so keeping N days is deleting folders.
A selected image's sidecar is written last, so a reader never sees a sidecar
without its image.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from visionops.core.env import project_path, state_dir

RECORDS = "records"
FEATURES = "features"  # per-image drift features, by record id (written later)
SELECTED = "selected"
REVIEWS = "reviews"
STORE_ENV = "VISIONOPS_FEEDBACK_DIR"  # the deployment sets it in the service
# Told about a file or folder a reader skips: its path and what is wrong with it.
OnError = Callable[[Path, str], None]


def default_root() -> Path:
    """The store of this machine: `VISIONOPS_FEEDBACK_DIR`, else the state folder's."""
    return Path(os.environ.get(STORE_ENV) or state_dir() / "feedback")


def new_id() -> str:
    """A record id: unique across workers and machines, sortable by nothing."""
    return uuid.uuid4().hex


def utc_now() -> datetime:
    """The time a record carries (UTC, ISO 8601 in the files)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Selected:
    """One selected image as the store keeps it.

    Attributes:
        record: The prediction record (`id`, `time`, `source`, `model`, `task`,
            `image`, `summary`, `latency_ms`, `selected`, `reasons`).
        predictions: The task's answer for the image (what the endpoint returned),
            the labeller's pre-labels.
        image: The stored (face-blurred) image.
    """

    record: Mapping[str, Any]
    predictions: Mapping[str, Any]
    image: Path

    @property
    def id(self) -> str:
        """The record's id."""
        return str(self.record["id"])


class FeedbackStore:
    """Appends records and selected images under one root; reads them back."""

    def __init__(self, root: str | Path | None = None, source: str = "service") -> None:
        """`root`: a folder as a user gives it (relative to the project root), or
        None for this machine's store (`default_root`)."""
        self.root = project_path(root) if root else default_root()
        self._file = f"{_slug(source)}-{_slug(socket.gethostname())}"
        self._lock = threading.Lock()

    # --- writing -------------------------------------------------------------------

    def append(self, record: Mapping[str, Any], kind: str = RECORDS) -> None:
        """Appends one record (JSON-able, with `id` and `time`) to today's file.

        Args:
            record: The line's object.
            kind: `RECORDS`, or `FEATURES` for a record's drift features.

        Raises:
            OSError: The store cannot be written (the caller logs and counts it).
        """
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        day = _day(record.get("time"))
        path = self.root / kind / day / f"{self._file}-{os.getpid()}.jsonl"
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(line)

    def keep_selected(
        self,
        record: Mapping[str, Any],
        predictions: Mapping[str, Any],
        jpeg: bytes,
    ) -> Path:
        """Stores a selected image (already face-blurred, JPEG bytes) with its record.

        Returns:
            The stored image's path.
        """
        folder = self.root / SELECTED / _day(record.get("time"))
        folder.mkdir(parents=True, exist_ok=True)
        image = folder / f"{record['id']}.jpg"
        _write_new(image, jpeg)
        sidecar = {"record": dict(record), "predictions": dict(predictions)}
        _write_new(
            image.with_suffix(".json"),
            json.dumps(sidecar, indent=1, default=str).encode(),
        )
        return image

    def mark_reviewed(self, ids: Iterable[str], batch: str) -> Path:
        """Records that a review batch took these selected images.

        Args:
            ids: The records' ids.
            batch: Where the batch went (a folder or a Picsellia address).
        """
        stamp = utc_now()
        path = self.root / REVIEWS / f"{stamp:%Y%m%dT%H%M%S%fZ}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"time": stamp.isoformat(), "batch": batch, "ids": sorted(ids)}
        _write_new(path, json.dumps(body, indent=1).encode())
        return path

    # --- reading -------------------------------------------------------------------

    def records(
        self, since: datetime | None = None, kind: str = RECORDS
    ) -> Iterator[dict[str, Any]]:
        """Every record (oldest day first), from `since` on when given.

        A line cut short by a crash is skipped, not fatal.

        Args:
            since: Only records from this time on.
            kind: `RECORDS`, or `FEATURES` for the records' drift features.
        """
        for day in self._days(kind, since):
            for path in sorted(day.glob("*.jsonl")):
                for line in path.read_text(encoding="utf-8").splitlines():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if since is None or _time(record) >= since:
                        yield record

    def selected(
        self, pending: bool = False, on_error: OnError | None = None
    ) -> list[Selected]:
        """The selected images, oldest first; only those no review took if `pending`.

        Args:
            pending: Leave out those a review batch already took.
            on_error: Given, a day folder that cannot be listed or a sidecar that
                cannot be read is reported to it and skipped; else it raises.
        """
        taken = self.reviewed_ids(on_error) if pending else set()
        found = []
        for day in self._days(SELECTED, None, on_error):
            try:
                sidecars = sorted(day.glob("*.json"))
            except OSError as err:
                _raise_or_tell(on_error, day, err)
                continue
            for sidecar in sidecars:
                try:
                    body = json.loads(sidecar.read_text(encoding="utf-8"))
                    item = Selected(
                        body["record"], body["predictions"], sidecar.with_suffix(".jpg")
                    )
                    item_id = item.id
                except (OSError, ValueError, KeyError, TypeError) as err:
                    _raise_or_tell(on_error, sidecar, err)
                    continue
                if item_id not in taken and item.image.is_file():
                    found.append(item)
        return sorted(found, key=lambda s: str(s.record.get("time", "")))

    def reviews(self, on_error: OnError | None = None) -> list[dict[str, Any]]:
        """The review batches made so far, oldest first (`on_error`: as `selected`)."""
        folder = self.root / REVIEWS
        found = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                review = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(review.get("ids"), list):
                    raise ValueError("no list of ids")
            except (OSError, ValueError, AttributeError) as err:
                _raise_or_tell(on_error, path, err)
                continue
            found.append(review)
        return found

    def reviewed_ids(self, on_error: OnError | None = None) -> set[str]:
        """The ids some review batch already took (`on_error`: as `selected`)."""
        return {i for review in self.reviews(on_error) for i in review["ids"]}

    def _days(
        self, kind: str, since: datetime | None, on_error: OnError | None = None
    ) -> list[Path]:
        folder = self.root / kind
        if not folder.is_dir():
            return []
        first = since.astimezone(UTC).strftime("%Y-%m-%d") if since else ""
        try:
            days = [d for d in folder.iterdir() if d.is_dir() and d.name >= first]
        except OSError as err:
            _raise_or_tell(on_error, folder, err)
            return []
        return sorted(days)


def _raise_or_tell(on_error: OnError | None, path: Path, err: Exception) -> None:
    """Raises `err`, or tells `on_error` about `path` when there is one."""
    if on_error is None:
        raise err
    on_error(path, f"{type(err).__name__}: {err}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_.") or "x"


def _day(time: Any) -> str:
    when = datetime.fromisoformat(str(time)) if time else utc_now()
    return when.astimezone(UTC).strftime("%Y-%m-%d")


def _time(record: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(record["time"]))


def _write_new(path: Path, data: bytes) -> None:
    """Writes `data` to `path` through a temporary name, so readers see all or none."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)
