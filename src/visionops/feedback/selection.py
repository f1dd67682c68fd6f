"""Which predicted images are kept for review: the policies and their rate caps.

A policy is a test on the task's summary of one prediction (`Task.summary`), one
entry of `POLICIES` under the name of its settings in `SelectionSettings`: a new
policy (novelty, once images have embeddings) is one more settings model and one
more entry. A policy that reads a key the task's summary lacks (a margin for
detection) never picks.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
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


class Selector:
    """Applies the policies to each prediction, each within its hourly and daily cap.

    Thread-safe: the service's request threads share one. The caps count per
    process (each serving worker has its own), in UTC hours and days.
    """

    def __init__(self, settings: SelectionSettings, seed: int | None = None) -> None:
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
        # Policy name -> (hour or day key, images picked in it).
        self._hour: dict[str, tuple[str, int]] = {}
        self._day: dict[str, tuple[str, int]] = {}

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
                in_hour = _taken(self._hour, name, hour)
                in_day = _taken(self._day, name, day)
                if in_hour >= policy.per_hour or in_day >= policy.per_day:
                    continue
                self._hour[name] = (hour, in_hour + 1)
                self._day[name] = (day, in_day + 1)
                reasons.append(name)
        return reasons

    def describe(self) -> list[str]:
        """The active policies with their caps, one short phrase each."""
        return [
            f"{name} ({policy.per_hour}/h, {policy.per_day}/day)"
            for name, policy in self.policies
        ]


def _taken(counts: dict[str, tuple[str, int]], name: str, key: str) -> int:
    held, count = counts.get(name, ("", 0))
    return count if held == key else 0
