"""Track ids across a client's frames: one Ultralytics tracker per client session.

The web page's webcam and video send each frame with `track=<session id>` (a
string the page chooses); frames of one session go through one tracker, so an
object keeps its id from frame to frame, as in batch on video. Sessions are
bounded: one idle for `TTL_S` is dropped, and past `MAX_SESSIONS` the least
recently used goes.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np

MAX_SESSIONS = 32
TTL_S = 120.0


class TrackSessions:
    """Trackers by session id, bounded in number and idle time (thread-safe)."""

    def __init__(self, max_sessions: int = MAX_SESSIONS, ttl_s: float = TTL_S):
        self.max_sessions, self.ttl_s = max_sessions, ttl_s
        self._sessions: OrderedDict[str, tuple[Any, float, threading.Lock]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def _session(self, key: str) -> tuple[Any, threading.Lock]:
        from visionops.engine.tracks import Tracker

        now = time.monotonic()
        with self._lock:
            for old in [
                k for k, v in self._sessions.items() if now - v[1] > self.ttl_s
            ]:
                del self._sessions[old]
            if key in self._sessions:
                tracker, _, lock = self._sessions.pop(key)
            else:
                tracker, lock = Tracker(), threading.Lock()
            self._sessions[key] = (tracker, now, lock)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            return tracker, lock

    def update(self, key: str, prediction: Any, frame: np.ndarray) -> np.ndarray:
        """The track id of each of the prediction's boxes in session `key`."""
        tracker, lock = self._session(key)
        with lock:  # one session's frames are tracked one at a time
            return tracker.update(
                prediction.boxes, prediction.scores, prediction.class_ids, frame
            )
