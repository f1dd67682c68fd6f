"""When the feedback loop retrains: enough labels reviewed since the champion's data.

Corrected review batches come back as dataset versions merged into their parent
(`merge_with`, `visionops.data.merge.Lineage`): each records its parent and how many
reviewed items it took. The labels reviewed since the champion's dataset are those of
the merges between it and the latest version; the loop retrains from the champion
when they reach `min_reviewed` (or, with `on_drift`, when there are some and the
drift report says drift), once per dataset version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetLink:
    """One dataset version as its lineage records it.

    Attributes:
        version: Its ZenML version.
        hash: Its content hash.
        parent_version: The version it was merged into, None when not a merge.
        reviewed: The reviewed items the merge took (0 when not a merge).
    """

    version: str
    hash: str
    parent_version: str | None = None
    reviewed: int = 0


def reviewed_since(
    links: Mapping[str, DatasetLink], latest: str, base_hash: str
) -> int | None:
    """The items reviewed in the merges from the version of `base_hash` to `latest`.

    Args:
        links: The dataset versions by version.
        latest: The version to count up to.
        base_hash: The content hash to count from (the champion's dataset).

    Returns:
        The sum (0 when `latest` holds that content), or None when `latest` does not
        descend from it through merges (a dataset ingested anew, or a lost parent).
    """
    total, seen, version = 0, set(), latest
    while version is not None and version not in seen:
        link = links.get(version)
        if link is None:
            return None
        if link.hash == base_hash:
            return total
        seen.add(version)
        total += link.reviewed
        version = link.parent_version
    return None


@dataclass(frozen=True)
class RetrainDecision:
    """Whether the loop retrains now, and why, in one sentence."""

    due: bool
    reason: str


def decide_retraining(
    *,
    dataset: str,
    reviewed: int | None,
    trained_by: str | None,
    min_reviewed: int,
    drifted: bool,
    on_drift: bool,
) -> RetrainDecision:
    """The loop's verdict on the latest dataset version.

    Args:
        dataset: The latest dataset version (what retraining would train on).
        reviewed: `reviewed_since` the champion's dataset.
        trained_by: The registered model version already trained on that dataset
            version, if any (then nothing new came back since).
        min_reviewed: Reviewed items that make a retraining due.
        drifted: The drift report of this run said drift.
        on_drift: Drift makes any reviewed items enough.
    """
    if trained_by is not None:
        return RetrainDecision(
            False,
            f"dataset v{dataset} was trained on already (model version {trained_by}); "
            "merge corrected labels into it first (ingestion with merge_with=latest)",
        )
    if reviewed is None:
        return RetrainDecision(
            False,
            f"dataset v{dataset} does not descend from the champion's dataset "
            "through merges of reviewed batches; train on it by hand: "
            "python run.py --pipeline training",
        )
    since = f"{reviewed} label(s) reviewed since the champion's dataset"
    if reviewed >= min_reviewed:
        return RetrainDecision(True, f"{since} (min_reviewed {min_reviewed})")
    if drifted and on_drift and reviewed > 0:
        return RetrainDecision(True, f"drift, and {since} (on_drift)")
    waiting = "; the drift report says drift" if drifted else ""
    return RetrainDecision(
        False, f"{since}, fewer than min_reviewed {min_reviewed}{waiting}"
    )
