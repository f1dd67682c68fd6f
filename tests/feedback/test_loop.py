"""The loop's verdict: labels reviewed since the champion's dataset, counted along
the merges, and when that makes a retraining due."""

from __future__ import annotations

import pytest

from visionops.feedback.loop import DatasetLink, decide_retraining, reviewed_since

# v1 ingested; v2 and v3 merged review batches into it; v4 ingested anew.
LINKS = {
    "1": DatasetLink("1", "aaa"),
    "2": DatasetLink("2", "bbb", parent_version="1", reviewed=30),
    "3": DatasetLink("3", "ccc", parent_version="2", reviewed=25),
    "4": DatasetLink("4", "ddd"),
}


@pytest.mark.parametrize(
    ("latest", "base", "count"),
    [
        ("3", "aaa", 55),  # both merges since v1
        ("3", "bbb", 25),  # only v3's
        ("3", "ccc", 0),  # the champion's own dataset
        ("4", "aaa", None),  # ingested anew: not a descendant
        ("3", "zzz", None),  # the champion's dataset is not in this store
    ],
)
def test_reviewed_items_are_summed_along_the_merges(latest, base, count) -> None:
    assert reviewed_since(LINKS, latest, base) == count


def test_a_lost_parent_or_a_cycle_counts_as_no_descent() -> None:
    lost = {"5": DatasetLink("5", "eee", parent_version="9", reviewed=3)}
    assert reviewed_since(lost, "5", "aaa") is None
    cycle = {
        "1": DatasetLink("1", "a", parent_version="2", reviewed=1),
        "2": DatasetLink("2", "b", parent_version="1", reviewed=1),
    }
    assert reviewed_since(cycle, "1", "zzz") is None


def _decide(**changes):
    args = {
        "dataset": "3",
        "reviewed": 55,
        "trained_by": None,
        "min_reviewed": 50,
        "drifted": False,
        "on_drift": False,
    }
    return decide_retraining(**{**args, **changes})


def test_enough_reviewed_labels_make_it_due() -> None:
    decision = _decide()
    assert decision.due
    assert "55 label(s) reviewed since the champion's dataset" in decision.reason


def test_fewer_are_not_enough_unless_drift_and_on_drift() -> None:
    few = _decide(reviewed=10)
    assert not few.due and "fewer than min_reviewed 50" in few.reason
    assert "drift" in _decide(reviewed=10, drifted=True).reason
    assert not _decide(reviewed=10, drifted=True).due  # on_drift off
    assert _decide(reviewed=10, drifted=True, on_drift=True).due
    # Drift with nothing reviewed: retraining would see the same data.
    assert not _decide(reviewed=0, drifted=True, on_drift=True).due


def test_a_dataset_trained_on_already_is_not_trained_on_again() -> None:
    """A challenger that lost leaves the champion's dataset behind: the count
    stays high, but the same data would only train the same model again."""
    decision = _decide(trained_by="7")
    assert not decision.due
    assert "dataset v3 was trained on already (model version 7)" in decision.reason
    assert "merge_with=latest" in decision.reason


def test_a_dataset_not_merged_from_the_champions_is_left_to_a_person() -> None:
    decision = _decide(reviewed=None)
    assert not decision.due
    assert "python run.py --pipeline training" in decision.reason
