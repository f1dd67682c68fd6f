"""Which predicted images are kept for review: the policies and their rate caps.

A policy is a test on the task's summary of one prediction (`Task.summary`), one
entry of `POLICIES` under the name of its settings in `SelectionSettings`: a new
policy (novelty, once images have embeddings) is one more settings model and one
more entry. A policy that reads a key the task's summary lacks (a margin for
detection) never picks.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from visionops.config import (
    ClassesPolicy,
    ConfidencePolicy,
    CountPolicy,
    MarginPolicy,
    RandomPolicy,
    SelectionPolicy,
    SelectionSettings,
)

Summary = Mapping[str, Any]


def _random(summary: Summary, policy: RandomPolicy, draw: float) -> bool:
    return draw < policy.fraction


def _confidence(summary: Summary, policy: ConfidencePolicy, draw: float) -> bool:
    return any(
        policy.low <= c < policy.high
        for scores in summary.get("confidences", {}).values()
        for c in scores
    )


def _empty(summary: Summary, policy: SelectionPolicy, draw: float) -> bool:
    return "classes" in summary and not summary["classes"]


def _classes(summary: Summary, policy: ClassesPolicy, draw: float) -> bool:
    found = summary.get("classes", {})
    return any(name in found for name in policy.classes)


def _count(summary: Summary, policy: CountPolicy, draw: float) -> bool:
    if "classes" not in summary:
        return False
    count = sum(summary["classes"].values())
    few = policy.min is not None and count < policy.min
    many = policy.max is not None and count > policy.max
    return few or many


def _margin(summary: Summary, policy: MarginPolicy, draw: float) -> bool:
    return "margin" in summary and summary["margin"] < policy.below


# Policy name (a field of `SelectionSettings`) -> does it pick this image?
# `(summary, its settings, a uniform draw in [0, 1))`.
POLICIES: dict[str, Callable[[Summary, Any, float], bool]] = {
    "random": _random,
    "confidence": _confidence,
    "empty": _empty,
    "classes": _classes,
    "count": _count,
    "margin": _margin,
}


class StoreLedger:
    """Counts shared by every process recording one model into one store.

    A SQLite file in the store, whose write lock orders the processes: a service's
    workers and a batch beside it keep at most the caps between them, not each.
    """

    FILE = "caps.sqlite"

    def __init__(self, root: Path, scope: str) -> None:
        """`scope`: whose caps (the model's name); several share one file."""
        self.path = Path(root) / self.FILE
        self.scope = scope
        self._local = threading.local()  # a connection per thread

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS taken (scope TEXT, policy TEXT, "
                "period TEXT, n INTEGER, PRIMARY KEY (scope, policy, period))"
            )
            self._local.db = db
        return db

    def take(self, policy: str, hour: str, day: str, caps: tuple[int, int]) -> bool:
        """Counts one image against `policy`'s `(per_hour, per_day)` caps in that
        UTC hour and day; False (nothing counted) when either is reached."""
        db = self._db()
        key = (self.scope, policy)
        db.execute("BEGIN IMMEDIATE")
        try:
            counts = dict(
                db.execute(
                    "SELECT period, n FROM taken WHERE scope = ? AND policy = ? "
                    "AND period IN (?, ?)",
                    (*key, hour, day),
                ).fetchall()
            )
            if counts.get(hour, 0) >= caps[0] or counts.get(day, 0) >= caps[1]:
                db.execute("ROLLBACK")
                return False
            db.executemany(
                "INSERT INTO taken VALUES (?, ?, ?, 1) ON CONFLICT "
                "(scope, policy, period) DO UPDATE SET n = n + 1",
                [(*key, hour), (*key, day)],
            )
            # Periods before today are never asked again ("2026-12-05T23" < day).
            db.execute(
                "DELETE FROM taken WHERE scope = ? AND policy = ? AND period < ?",
                (*key, day),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return True


class Selector:
    """Applies the policies to each prediction, each within its hourly and daily cap.

    Thread-safe: the service's request threads share one. The caps count in UTC
    hours and days, in the `ledger`: a `StoreLedger` shares them with every
    process recording the same model into the same store.
    """

    def __init__(
        self,
        settings: SelectionSettings,
        ledger: StoreLedger,
        seed: int | None = None,
    ) -> None:
        missing = set(type(settings).model_fields) ^ set(POLICIES)
        if missing:  # a settings model without its test, or the other way round
            raise ValueError(f"selection policies without a pair: {sorted(missing)}")
        self.policies = [
            (name, policy)
            for name, policy in settings
            if policy.enabled and policy.per_hour and policy.per_day
        ]
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.ledger = ledger
        # Policy name -> the hour a cap of it was found reached in: counts only
        # grow, so the ledger is not asked again for it before the next hour.
        self._full: dict[str, str] = {}

    def choose(self, summary: Summary, now: datetime) -> list[str]:
        """The policies that pick this image and still have room; their caps count it.

        Args:
            summary: The task's summary of the prediction.
            now: The prediction's time (UTC): which hour and day it counts in.

        Returns:
            The reasons (policy names), empty when the image is not kept.
        """
        if not self.policies:
            return []
        hour, day = f"{now:%Y-%m-%dT%H}", f"{now:%Y-%m-%d}"
        reasons = []
        with self._lock:
            draw = self._random.random()
            for name, policy in self.policies:
                if not POLICIES[name](summary, policy, draw):
                    continue
                if self._full.get(name) == hour:
                    continue
                if self.ledger.take(name, hour, day, (policy.per_hour, policy.per_day)):
                    reasons.append(name)
                else:
                    self._full[name] = hour
        return reasons

    def describe(self) -> list[str]:
        """The active policies with their caps, one short phrase each."""
        return [
            f"{name} ({policy.per_hour}/h, {policy.per_day}/day)"
            for name, policy in self.policies
        ]
