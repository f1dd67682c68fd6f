"""What `run.py --status` reports: active stack, training's dataset, champion."""

from __future__ import annotations

import os
from typing import Any

# `--status` answers within seconds: one MLflow request, no retries (MLflow's own
# defaults retry with backoff for minutes before giving up).
MLFLOW_TIMEOUT_S = 10


class StatusError(RuntimeError):
    """A service the status needs does not answer; the message names it."""


def _training_dataset(selector: str, model_name: str) -> dict[str, Any] | None:
    """The dataset `--pipeline training` would use now, and whether it would pass."""
    from visionops.lookup import (
        DatasetError,
        check_training_dataset,
        dataset_versions,
        resolve_dataset,
    )

    versions = dataset_versions()
    if not versions:
        return None
    try:
        choice = resolve_dataset(selector, versions)
    except DatasetError as err:
        return {"selector": selector, "version": None, "problem": str(err)}
    problem = None
    try:
        check_training_dataset(choice.facts, _champion_facts(model_name, versions))
    except DatasetError as err:
        problem = str(err)
    artifact = choice.artifact
    meta = artifact.run_metadata
    return {
        "selector": selector,
        "note": choice.note or None,
        "problem": problem,
        "version": str(artifact.version),
        "hash": meta.get("dataset_hash"),
        "task": meta.get("task", "detect"),
        "path": meta.get("path"),
        "source": meta.get("source"),
        "classes": meta.get("classes"),
        "images": meta.get("images"),
        "items_in": meta.get("items_in"),
        "accepted": meta.get("accepted"),
        "quarantined": meta.get("quarantined"),
        "faces_blurred": meta.get("faces_blurred"),
        "created": artifact.created.isoformat(),
        "artifact_id": str(artifact.id),
    }


def _tracking(client: Any) -> bool:
    """Points MLflow at the active stack's tracker; False if it has none."""
    from visionops.training.tracking import TrackingError, configure_tracking

    if client.active_stack_model.components.get("experiment_tracker") is None:
        return False
    try:
        configure_tracking()
    except TrackingError:
        return False
    return True


def _champion_facts(name: str, versions: list[Any]) -> Any:
    """The champion's task and classes, if the stack tracks one."""
    from zenml.client import Client

    from visionops.lookup import champion_facts

    return champion_facts(name, versions) if _tracking(Client()) else None


def _champion(client: Any, name: str) -> dict[str, Any] | None:
    """The MLflow `champion` of model `name`, if the stack tracks one."""
    from visionops.stacks import redact
    from visionops.training.tracking import CHAMPION, configure_tracking

    if not _tracking(client):
        return None
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        version = mlflow.MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None  # no such model or alias: no champion yet
        raise StatusError(
            f"The MLflow tracker at {redact(configure_tracking())} does not answer "
            f"({redact(str(err).splitlines()[0])}): start it, or switch stacks "
            "with `python run.py --stack local`."
        ) from None

    run = mlflow.get_run(version.run_id)
    onnx = [
        f.path for f in mlflow.MlflowClient().list_artifacts(version.run_id, "onnx")
    ]
    tags = version.tags
    return {
        "name": name,
        "version": str(version.version),
        "mlflow_model_uri": f"models:/{name}@champion",
        "test_metrics": {
            k.removeprefix("test_"): float(v)
            for k, v in tags.items()
            if k.startswith("test_")
        },
        "onnx_latency_ms": float(tags["onnx_latency_ms"])
        if tags.get("onnx_latency_ms")
        else None,
        "dataset_hash": tags.get("dataset_hash"),
        "zenml_model_version": tags.get("zenml.model_version"),
        "onnx": f"{run.info.artifact_uri}/{onnx[0]}" if onnx else None,
        "mlflow_run_id": version.run_id,
    }


def collect_status(model_name: str, dataset: str = "latest") -> dict[str, Any]:
    """Returns the project's status as a JSON-ready dict with stable keys.

    Args:
        model_name: The registered model whose champion is reported.
        dataset: The training config's dataset selector; the status names the
            version it means now.
    """
    from zenml.client import Client

    from visionops.stacks import StackError, check_active_stack, redact

    try:  # a service that is down is named at once, not reported as "none yet"
        check_active_stack()
    except StackError as err:
        raise StatusError(str(err)) from None
    for key, value in (
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", str(MLFLOW_TIMEOUT_S)),
    ):
        os.environ.setdefault(key, value)
    client = Client()
    stack = client.active_stack_model
    tracker = client.active_stack.experiment_tracker
    return {
        "stack": {
            "name": stack.name,
            "components": {
                str(kind): [c.name for c in comps]
                for kind, comps in stack.components.items()
            },
            "tracking_uri": redact(tracker.get_tracking_uri()) if tracker else None,  # type: ignore[attr-defined]
        },
        "dataset": _training_dataset(dataset, model_name),
        "champion": _champion(client, model_name),
    }


def format_status(status: dict[str, Any]) -> str:
    """Renders the status for people."""
    lines = [f"Active stack: {status['stack']['name']}"]
    if status["stack"]["tracking_uri"]:
        lines.append(f"  tracking_uri: {status['stack']['tracking_uri']}")
    for kind, names in sorted(status["stack"]["components"].items()):
        lines.append(f"  {kind}: {', '.join(names)}")
    dataset = status["dataset"]
    if dataset is None:
        lines.append("Dataset: none yet (run: python run.py --pipeline ingestion)")
    elif dataset["version"] is None:
        lines.append(f"Dataset for training: none: {dataset['problem']}")
    else:
        images = dataset["images"] or {}
        lines.append(
            f"Dataset for training (dataset={dataset['selector']}): version "
            f"{dataset['version']}, hash {str(dataset['hash'])[:12]}, "
            f"{dataset['task']}, classes {dataset['classes']}"
        )
        if dataset["note"]:
            lines.append(f"  {dataset['note']}")
        if dataset["problem"]:
            lines.append(f"  training would stop: {dataset['problem']}")
        lines += [
            f"  path: {dataset['path']}",
            f"  source: {dataset['source']}",
            "  images: " + ", ".join(f"{k} {v}" for k, v in images.items()),
            f"  items in {dataset['items_in']} = accepted {dataset['accepted']}"
            f" + quarantined {dataset['quarantined']};"
            f" faces blurred {dataset['faces_blurred']}",
        ]
    champ = status["champion"]
    if champ is None:
        lines.append("Champion: none yet (run: python run.py --pipeline training)")
    else:
        metrics = ", ".join(
            f"{k} {v:.4f}" for k, v in sorted(champ["test_metrics"].items())
        )
        lines += [
            f"Champion: {champ['name']} v{champ['version']}"
            f" ({champ['mlflow_model_uri']})",
            f"  test: {metrics}",
            f"  ONNX: {champ['onnx']} ({champ['onnx_latency_ms']} ms on CPU)",
        ]
    return "\n".join(lines)
