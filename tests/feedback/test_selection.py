"""Selection policies on the tasks' own summaries, and their hourly and daily caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from visionops.config import ConfigError, SelectionSettings, load_parameters
from visionops.feedback.selection import POLICIES, Selector, StoreLedger
from visionops.tasks import get_task
from visionops.tasks.classify.onnx import Classification
from visionops.tasks.detect.onnx import Detections

NAMES = {0: "board", 1: "chip"}
NOON = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
OFF = {
    name: {"enabled": False}
    for name in ("random", "confidence", "empty", "classes", "count", "margin")
}


def _detections(scores: list[float], classes: list[int]) -> dict:
    found = Detections(
        np.zeros((len(scores), 4), np.float32),
        np.array(scores, np.float32),
        np.array(classes, np.int64),
    )
    return get_task("detect").summary(found, NAMES)


def _classified(probabilities: list[float]) -> dict:
    found = Classification(np.array(probabilities, np.float32))
    return get_task("classify").summary(found, NAMES)


def _only(name: str, store: Path, model: str = "m", **settings) -> Selector:
    policies = {**OFF, name: {"enabled": True, **settings}}
    ledger = StoreLedger(store, model)
    return Selector(SelectionSettings.model_validate(policies), ledger, seed=0)


def test_task_summaries_count_and_rank() -> None:
    assert _detections([0.9, 0.5, 0.3], [0, 1, 0]) == {
        "count": 3,
        "classes": {"board": 2, "chip": 1},
        "confidences": {"board": [0.9, 0.3], "chip": [0.5]},
    }
    summary = _classified([0.3, 0.7])
    assert summary["top"] == "chip" and summary["classes"] == {"chip": 1}
    assert summary["probabilities"] == {"chip": 0.7, "board": 0.3}
    assert summary["margin"] == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("policy", "settings", "picked", "passed"),
    [
        ("confidence", {}, _detections([0.9, 0.3], [0, 0]), _detections([0.9], [0])),
        ("empty", {}, _detections([], []), _detections([0.9], [0])),
        (
            "classes",
            {"classes": ["chip"]},
            _detections([0.9], [1]),
            _detections([], []),
        ),
        ("count", {"max": 1}, _detections([0.9, 0.8], [0, 0]), _detections([0.9], [0])),
        ("count", {"min": 1}, _detections([], []), _detections([0.9], [0])),
        ("margin", {}, _classified([0.52, 0.48]), _classified([0.1, 0.9])),
        ("random", {"fraction": 1.0}, _detections([], []), None),
    ],
)
def test_each_policy_picks_what_it_says(
    policy, settings, picked, passed, tmp_path: Path
) -> None:
    selector = _only(policy, tmp_path, **settings)
    assert selector.choose(picked, NOON) == [policy]
    if passed is not None:
        assert selector.choose(passed, NOON) == []


def test_a_policy_reading_what_the_task_lacks_never_picks(tmp_path: Path) -> None:
    # Detection has no margin; an image where the model hesitated between classes
    # is the classifier's business.
    margin = _only("margin", tmp_path, below=1.0)
    assert margin.choose(_detections([0.3], [0]), NOON) == []
    nothing = _only("random", tmp_path, fraction=0.0)
    assert nothing.choose(_detections([], []), NOON) == []


def test_caps_per_hour_and_per_day(tmp_path: Path) -> None:
    selector = _only("empty", tmp_path, per_hour=2, per_day=3)
    empty = _detections([], [])
    picks = [bool(selector.choose(empty, NOON)) for _ in range(5)]
    assert picks == [True, True, False, False, False]  # 2 this hour
    next_hour = NOON + timedelta(hours=1)
    picks = [bool(selector.choose(empty, next_hour)) for _ in range(3)]
    assert picks == [True, False, False]  # the day's third, then the day is full
    assert selector.choose(empty, NOON + timedelta(days=1)) == ["empty"]


def _pick_in_a_process(root: str, model: str, hour: int, tries: int) -> int:
    """A process recording `model` into the store at `root`: how many it picked."""
    selector = _only("random", Path(root), model, fraction=1.0, per_hour=7, per_day=10)
    when = NOON + timedelta(hours=hour)
    return sum(bool(selector.choose({}, when)) for _ in range(tries))


def test_caps_are_shared_by_the_processes_recording_into_one_store(
    tmp_path: Path,
) -> None:
    """A service's workers and a batch beside it keep the caps between them."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(4) as pool:
        this_hour = pool.starmap(_pick_in_a_process, [(str(tmp_path), "m", 0, 20)] * 4)
        # Another model keeps its own caps; the next hour has 3 left of the day.
        other = pool.starmap(_pick_in_a_process, [(str(tmp_path), "other", 0, 20)])
        next_hour = pool.starmap(_pick_in_a_process, [(str(tmp_path), "m", 1, 20)] * 4)
    assert sum(this_hour) == 7, this_hour
    assert other == [7]
    assert sum(next_hour) == 3, next_hour
    # The next day starts over; yesterday's counts are gone from the file.
    assert _pick_in_a_process(str(tmp_path), "m", 24, 20) == 7
    import sqlite3

    with sqlite3.connect(tmp_path / StoreLedger.FILE) as db:
        periods = {p for (p,) in db.execute("SELECT period FROM taken WHERE scope='m'")}
    assert periods == {"2026-12-07", "2026-12-07T12"}


def test_several_policies_give_several_reasons_each_within_its_cap(
    tmp_path: Path,
) -> None:
    policies = {**OFF, "empty": {"per_hour": 1}, "random": {"fraction": 1.0}}
    ledger = StoreLedger(tmp_path, "m")
    selector = Selector(SelectionSettings.model_validate(policies), ledger)
    empty = _detections([], [])
    assert selector.choose(empty, NOON) == ["random", "empty"]
    assert selector.choose(empty, NOON) == ["random"]  # empty's hour is full


def test_every_policy_setting_has_its_test() -> None:
    assert set(SelectionSettings.model_fields) == set(POLICIES)


def test_configs_check_the_policies() -> None:
    params = load_parameters("deployment", overrides=["feedback.selection.count.max=5"])
    assert params.feedback.selection.count.max == 5
    with pytest.raises(ConfigError, match=r"confidence.*low \(0.5\) must be below"):
        load_parameters("batch", overrides=["feedback.selection.confidence.low=0.5"])
    with pytest.raises(ConfigError, match="always face-blurred"):
        load_parameters("batch", overrides=["feedback.anonymize.enabled=false"])
