"""Object tracks across frames with Ultralytics' own trackers, fed our ONNX boxes."""

from __future__ import annotations

from typing import Any

import numpy as np

# Ultralytics' trackers (`ultralytics/cfg/trackers/<name>.yaml`), with its defaults;
# a path to such a YAML of one's own tunes them, as Ultralytics' `tracker=` does.
TRACKERS = ("bytetrack", "botsort")
DEFAULT_TRACKER = "bytetrack"


def tracker_config(name: str) -> str:
    """The tracker YAML a name (`bytetrack`, `botsort`) or a `.yaml` path means.

    Raises:
        ValueError: Neither a known name nor an existing YAML file.
    """
    from pathlib import Path

    if name in TRACKERS:
        return f"{name}.yaml"
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return name
    raise ValueError(
        f"tracker {name!r}: use {' or '.join(TRACKERS)}, or the path of a tracker "
        "YAML (tracker_type: bytetrack|botsort and its thresholds)"
    )


class Tracker:
    """ByteTrack or BoT-SORT (without ReID) over one stream of frames.

    Ultralytics' `BYTETracker.update` takes NumPy-backed `Boxes` (`conf`, `cls`,
    `xywh`, boolean indexing) and the frame (BoT-SORT's motion compensation reads
    it); it answers the tracked boxes with the index of the detection each one
    came from, which is how a track id goes back to our detection.
    """

    def __init__(self, name: str = DEFAULT_TRACKER) -> None:
        """Builds the tracker from Ultralytics' configuration of `name`, or a YAML."""
        # Imported here: Ultralytics' trackers import torch (and `lap`).
        from ultralytics.trackers.track import TRACKER_MAP
        from ultralytics.utils import YAML, IterableSimpleNamespace
        from ultralytics.utils.checks import check_yaml

        config = IterableSimpleNamespace(**YAML.load(check_yaml(tracker_config(name))))
        config.with_reid = False  # ReID wants a torch model: not in an ONNX batch
        self.name = name
        self._tracker = TRACKER_MAP[config.tracker_type](args=config)

    def update(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        class_ids: np.ndarray,
        frame: np.ndarray,
    ) -> np.ndarray:
        """Feeds one frame's detections; returns each detection's track id.

        Args:
            boxes: (n, 4) x1, y1, x2, y2 pixels.
            scores: (n,) confidences.
            class_ids: (n,) class indices.
            frame: The BGR frame they were found in.

        Returns:
            (n,) int64 track ids, 0 where the detection is in no confirmed track
            (too unsure, or seen once and not yet confirmed).
        """
        from ultralytics.engine.results import Boxes

        data = np.column_stack(
            [
                np.asarray(boxes, np.float32).reshape(-1, 4),
                np.asarray(scores, np.float32),
                np.asarray(class_ids, np.float32),
            ]
        )
        tracked: Any = self._tracker.update(Boxes(data, frame.shape[:2]), frame)
        ids = np.zeros(len(data), np.int64)
        if len(tracked):
            ids[tracked[:, -1].astype(np.int64)] = tracked[:, 4].astype(np.int64)
        return ids
