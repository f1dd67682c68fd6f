"""Drift beside the registry: a model's reference in its run, reports in MLflow.

The reference is captured after evaluation, with the ONNX export deployment
serves, and logged to the candidate's MLflow run; the registry version points
at that run, so the champion's reference is found from the champion alone.
Each report (batch or records) is one run of the `drift` experiment.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from visionops.config import DriftSettings
from visionops.data.version import DatasetVersion
from visionops.engine.task import Task
from visionops.feedback.drift import DriftResult, write_report
from visionops.feedback.features import (
    EMBEDDING_DIMS,
    Featurizer,
    Reference,
    build_reference,
)
from visionops.feedback.store import FEATURES, FeedbackStore, utc_now
from visionops.training.champion import Champion
from visionops.training.tracking import NOT_FOUND

REFERENCE_ARTIFACT = "drift/reference.json"
REFERENCE_SPLITS = ("val", "test")


def capture_reference(
    task: Task,
    onnx: Path,
    dataset: DatasetVersion,
    run_id: str | None = None,
    model: dict[str, Any] | None = None,
) -> Reference:
    """The model's feature records on the dataset's val and test splits.

    Args:
        task: The model's task.
        onnx: The export deployment serves.
        dataset: The dataset version it was trained on.
        run_id: The MLflow run to log `drift/reference.json` to (None: not logged).
        model: What the model is, recorded in the reference.
    """
    splits = {s: task.split_images(dataset, s) for s in REFERENCE_SPLITS}
    reference = build_reference(
        Featurizer(task, onnx),
        splits,
        EMBEDDING_DIMS,
        model={"dataset_hash": dataset.hash, **(model or {})},
    )
    if run_id is not None:
        from mlflow.tracking import MlflowClient

        MlflowClient().log_dict(run_id, reference.to_dict(), REFERENCE_ARTIFACT)
    return reference


def fetch_reference(champion: Champion, dest: Path) -> Reference | None:
    """The reference kept in the champion's run, or None (trained before drift
    references were kept: retrain to get one)."""
    from mlflow.exceptions import MlflowException

    from visionops.training.tracking import download_run_file

    try:
        path = download_run_file(champion.run_id, REFERENCE_ARTIFACT, dest)
    except MlflowException as err:
        if err.error_code in NOT_FOUND:
            return None
        raise
    except OSError:  # a file store answers a missing artifact with this
        return None
    reference = Reference.from_dict(json.loads(path.read_text()))
    reference.model.update(
        {"name": champion.name, "version": champion.version, "run_id": champion.run_id}
    )
    return reference


DRIFT_EXPERIMENT = "drift"  # one MLflow run per report, tagged with the model
VERDICT_TAG = "drift.verdict"


def log_drift(report_dir: Path, champion: Champion, source: str) -> str:
    """Logs a report (`drift.json`'s figures as metrics, both files as artifacts)
    to a run of the `drift` experiment, tagged with the model and verdict.

    Args:
        report_dir: The folder holding `drift.html` and `drift.json`.
        champion: The model the report is about.
        source: What was compared: `batch` or `records`.

    Returns:
        The MLflow run id.
    """
    from mlflow.tracking import MlflowClient

    from visionops.feedback.drift import DRIFT_HTML, DRIFT_JSON, read_result
    from visionops.training.tracking import stack_artifact_location

    result = read_result(report_dir / DRIFT_JSON)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(DRIFT_EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(
            DRIFT_EXPERIMENT, artifact_location=stack_artifact_location()
        )
    )
    run = client.create_run(
        experiment_id,
        tags={
            "model": champion.name,
            "model_version": str(champion.version),
            "task": champion.task,
            "source": source,
            VERDICT_TAG: str(result.verdict or "none"),
            "drift.drifted": ",".join(result.drifted),
            "drift.reason": result.reason or "",
        },
    )
    run_id = run.info.run_id
    for key, value in result.metrics().items():
        client.log_metric(run_id, key, value)
    for name in (DRIFT_HTML, DRIFT_JSON):
        client.log_artifact(run_id, str(report_dir / name), "drift")
    client.set_terminated(run_id)
    return run_id


def latest_verdicts() -> dict[str, dict[str, Any]]:
    """The newest drift report per model: verdict, drifted, images, time, source."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(DRIFT_EXPERIMENT)
    if experiment is None:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for run in client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"]
    ):
        tags = run.data.tags
        model = tags.get("model")
        if not model or model in found:
            continue
        found[model] = {
            "version": tags.get("model_version"),
            "verdict": None if tags.get(VERDICT_TAG) == "none" else tags[VERDICT_TAG],
            "drifted": [d for d in tags.get("drift.drifted", "").split(",") if d],
            "reason": tags.get("drift.reason") or None,
            "images": int(run.data.metrics.get("drift_images", 0)),
            "source": tags.get("source"),
            "time": run.info.start_time,
            "run_id": run.info.run_id,
        }
    return found


def record_features(
    records: Iterable[Mapping[str, Any]], model_name: str, last: int | None = None
) -> list[dict[str, Any]]:
    """The feature records of a model's prediction records (the newest `last`).

    A record belongs to the model when its `model` is the name, `name:version`,
    or a mapping with that `name`; records without `features` are left out.
    """
    rows = []
    for record in records:
        model = record.get("model")
        name = model.get("name") if isinstance(model, Mapping) else model
        if str(name).split(":")[0] != model_name or not record.get("features"):
            continue
        rows.append(dict(record["features"]))
    return rows[-last:] if last else rows


def records_drift(
    champion: Champion,
    store: FeedbackStore,
    settings: DriftSettings,
    out_dir: Path,
    *,
    days: int | None = None,
    last: int | None = None,
) -> DriftResult:
    """The champion's prediction records of the last `days` against its reference:
    `drift.html` and `drift.json` in `out_dir`.

    Raises:
        LookupError: The champion's run kept no reference.
    """
    reference = fetch_reference(champion, out_dir / "reference")
    if reference is None:
        raise LookupError(
            f"{champion.name} v{champion.version} kept no drift reference (trained "
            "before drift references were kept): retrain it, e.g. python run.py "
            "--pipeline training"
        )
    since = utc_now() - timedelta(days=days) if days else None
    rows = record_features(store.records(since, FEATURES), champion.name, last)
    return write_report(rows, reference, settings, out_dir)
