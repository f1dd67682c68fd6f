"""The feedback loop's gate: whether `--pipeline loop` retrains, from the stores.

Reads the dataset versions' lineage (ZenML), the champion and the registered
versions (MLflow) and the drift verdict of the loop's own drift run, and asks
`visionops.feedback.loop.decide_retraining`.
"""

from __future__ import annotations

from typing import Any

from visionops.feedback.loop import DatasetLink, decide_retraining, reviewed_since


def dataset_links(versions: list[Any]) -> dict[str, DatasetLink]:
    """The lineage of each `dataset` artifact version, by version."""
    links = {}
    for artifact in versions:
        meta = artifact.run_metadata
        parent = meta.get("parent_version")
        links[str(artifact.version)] = DatasetLink(
            version=str(artifact.version),
            hash=str(meta.get("dataset_hash", "")),
            parent_version=str(parent) if parent else None,
            reviewed=int(meta.get("reviewed") or 0),
        )
    return links


def trained_by(model_name: str, dataset_hash: str) -> str | None:
    """The newest registered version of `model_name` trained on that dataset."""
    from mlflow.tracking import MlflowClient

    found = [
        int(v.version)
        for v in MlflowClient().search_model_versions(f"name='{model_name}'")
        if v.tags.get("dataset_hash") == dataset_hash
    ]
    return str(max(found)) if found else None


def _drifted(drift_run: Any) -> bool:
    """Whether the loop's drift run said drift (False without a run or verdict)."""
    if drift_run is None:
        return False
    from visionops.core.names import DRIFT_RESULT
    from visionops.feedback.drift import DRIFT

    result = drift_run.steps["report_drift"].outputs[DRIFT_RESULT][0].load()
    return result.get("verdict") == DRIFT


def retraining_due(params: Any, training: Any, drift_run: Any) -> tuple[bool, str]:
    """Whether the loop's training runs now, and why.

    Args:
        params: The loop's parameters (`min_reviewed`, `on_drift`).
        training: The checked training parameters (dataset selector, model name).
        drift_run: The loop's drift run, if it ran.
    """
    from visionops.app.lookup import dataset_versions, resolve_dataset
    from visionops.training.champion import Champion
    from visionops.training.tracking import configure_tracking

    configure_tracking()
    versions = dataset_versions()
    latest = resolve_dataset(training.dataset, versions).facts
    champion = Champion.get(training.model.name)
    reviewed = (
        None
        if champion.dataset_hash is None
        else reviewed_since(
            dataset_links(versions), latest.version, champion.dataset_hash
        )
    )
    decision = decide_retraining(
        dataset=latest.version,
        reviewed=reviewed,
        trained_by=trained_by(training.model.name, latest.hash),
        min_reviewed=params.min_reviewed,
        drifted=_drifted(drift_run),
        on_drift=params.on_drift,
    )
    verdict = "Retraining" if decision.due else "No retraining"
    return decision.due, (
        f"{verdict} of {training.model.name} (champion v{champion.version}) "
        f"on dataset v{latest.version}: {decision.reason}"
    )
