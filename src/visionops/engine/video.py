"""A task's share of batch over one video: its rows per frame, tracks and drawing."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from visionops.engine.tracks import DEFAULT_TRACKER

# What every row of a video's CSV starts with (`visionops.batch.video`).
FRAME_COLUMNS = ("video", "frame", "time_s")
TRACK_COLUMNS = (
    "video",
    "track_id",
    "class_id",
    "class_name",
    "first_frame",
    "last_frame",
    "first_s",
    "last_s",
    "frames",
    "mean_confidence",
)


@dataclass
class FrameRows:
    """What one predicted frame gave.

    Attributes:
        rows: CSV rows after `FRAME_COLUMNS` (the task's `columns`).
        counts: Objects (or the top class) per class name in the frame.
        marks: What `draw` needs beside the prediction (e.g. the track ids).
    """

    rows: list[tuple]
    counts: dict[str, int]
    marks: Any = None


@dataclass
class _Track:
    class_id: int
    first: tuple[int, float]
    last: tuple[int, float]
    confidences: list[float] = field(default_factory=list)


class VideoOutput(ABC):
    """A task's share of batch over one video (`Task.video_output`), one per video.

    Attributes:
        columns: The task's columns of the video CSV, after `FRAME_COLUMNS`.
        tracks: Whether the frames go through a tracker (tasks with boxes).
    """

    columns: ClassVar[tuple[str, ...]]
    tracks: ClassVar[bool] = False

    def __init__(self, names: Sequence[str], tracker: str = DEFAULT_TRACKER):
        """Keeps the class names; a tracked output makes its tracker."""
        self.names = list(names)
        self.tracker_name = tracker
        self._tracks: dict[int, _Track] = {}

    @abstractmethod
    def add(self, index: int, time_s: float, image: np.ndarray, prediction: Any):
        """One predicted frame, in order: its `FrameRows`."""

    @abstractmethod
    def draw(self, image: np.ndarray, prediction: Any, marks: Any) -> np.ndarray:
        """The frame with the prediction (and `FrameRows.marks`) drawn on a copy."""

    def seen(
        self, track_id: int, class_id: int, confidence: float, at: tuple[int, float]
    ) -> None:
        """Records a track seen at `(frame, time_s)` (for `track_rows`)."""
        track = self._tracks.setdefault(track_id, _Track(class_id, at, at))
        track.last = at
        track.confidences.append(confidence)

    def track_rows(self) -> list[tuple]:
        """One row per track (`TRACK_COLUMNS` after `video`): its class (the first
        seen), first and last frame and time, frames seen, mean confidence."""
        return [
            (
                track_id,
                t.class_id,
                self.names[t.class_id],
                t.first[0],
                t.last[0],
                t.first[1],
                t.last[1],
                len(t.confidences),
                round(float(np.mean(t.confidences)), 5),
            )
            for track_id, t in sorted(self._tracks.items())
        ]
