"""Detection on video: one CSV row per box with its track id, boxes labelled `#id`."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from visionops.data.report import draw_box
from visionops.engine.tracks import Tracker
from visionops.engine.video import FrameRows, VideoOutput

COLUMNS = (
    "track_id",
    "class_id",
    "class_name",
    "confidence",
    "x1",
    "y1",
    "x2",
    "y2",
)


class TrackedVideoOutput(VideoOutput):
    """Every box of every frame as a row (`track_id` empty while the box is in no
    confirmed track), the tracks summarised, boxes drawn as `#id name conf`."""

    columns = COLUMNS
    tracks = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Makes the video's tracker (one per video: ids restart at 1)."""
        super().__init__(*args, **kwargs)
        self.tracker = Tracker(self.tracker_name)

    def add(
        self, index: int, time_s: float, image: np.ndarray, prediction: Any
    ) -> FrameRows:
        """Tracks the frame's boxes; returns its rows, counts and track ids."""
        ids = self.tracker.update(
            prediction.boxes, prediction.scores, prediction.class_ids, image
        )
        rows = []
        for (x1, y1, x2, y2), score, cls, track in zip(
            prediction.boxes.tolist(),
            prediction.scores.tolist(),
            prediction.class_ids.tolist(),
            ids.tolist(),
            strict=True,
        ):
            confidence = round(score, 5)
            if track:
                self.seen(track, cls, confidence, (index, time_s))
            box = (round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2))
            rows.append((track or "", cls, self.names[cls], confidence, *box))
        counts = Counter(self.names[c] for c in prediction.class_ids.tolist())
        return FrameRows(rows, dict(counts), ids)

    def draw(self, image: np.ndarray, prediction: Any, marks: Any) -> np.ndarray:
        """Boxes in the class colours, labelled `#id name conf` (no id: untracked)."""
        out = image.copy()
        label_boxes(out, prediction, marks, self.names)
        return out


def label_boxes(
    image: np.ndarray, prediction: Any, ids: np.ndarray, names: list[str]
) -> None:
    """Draws each box with `#track name conf` on the image, in place."""
    for box, score, cls, track in zip(
        prediction.boxes, prediction.scores, prediction.class_ids, ids, strict=True
    ):
        prefix = f"#{track} " if track else ""
        label = f"{prefix}{names[int(cls)]} {score:.2f}"
        draw_box(image, tuple(int(v) for v in box), int(cls), label)
