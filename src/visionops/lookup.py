"""Finding dataset versions and the champion model across ZenML and MLflow."""

from __future__ import annotations

from typing import Any

from visionops.names import DATASET


def find_dataset(selector: str = "latest") -> Any:
    """Returns the `dataset` artifact for `latest`, a version number or a hash prefix.

    Raises:
        LookupError: with what to run or which versions exist.
    """
    from zenml.client import Client

    client = Client()
    try:
        if selector == "latest":
            return client.get_artifact_version(DATASET)
        if selector.isdigit():
            return client.get_artifact_version(DATASET, version=selector)
    except KeyError:
        raise LookupError(
            f"No dataset version {selector!r} in this ZenML store. Run "
            "`python run.py --pipeline ingestion` first, or pick one from "
            "`python run.py --status`."
        ) from None
    page = client.list_artifact_versions(
        name=DATASET, sort_by="desc:created", size=1000
    )
    matches = [
        v
        for v in page.items
        if str(v.run_metadata.get("dataset_hash", "")).startswith(selector)
    ]
    if len(matches) != 1:
        known = sorted(
            {str(v.run_metadata.get("dataset_hash", ""))[:12] for v in page.items}
        )
        what = "No" if not matches else "More than one"
        raise LookupError(
            f"{what} dataset version has a hash starting with {selector!r}; "
            f"known: {known}."
        )
    return matches[0]
