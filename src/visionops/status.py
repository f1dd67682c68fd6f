"""What `run.py --status` reports: active stack, latest dataset version, champion."""

from __future__ import annotations

from typing import Any

from visionops.names import DATASET


def _latest_dataset(client: Any) -> dict[str, Any] | None:
    try:
        artifact = client.get_artifact_version(DATASET)
    except (KeyError, RuntimeError):
        return None
    meta = artifact.run_metadata
    return {
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


def _champion(client: Any, name: str) -> dict[str, Any] | None:
    """The MLflow `champion` of model `name`, if the stack tracks one."""
    from visionops.champion import Champion
    from visionops.training.tracking import TrackingError, configure_tracking

    if client.active_stack_model.components.get("experiment_tracker") is None:
        return None
    try:
        configure_tracking()
    except TrackingError:
        return None
    champion = Champion.lookup(name)
    if champion is None:
        return None
    return {
        "name": name,
        "version": champion.version,
        "task": champion.task,
        "class_names": champion.class_names,
        "mlflow_model_uri": champion.model_uri,
        "test_metrics": champion.test_metrics,
        "onnx_latency_ms": champion.onnx_latency_ms,
        "dataset_hash": champion.dataset_hash,
        "zenml_model_version": champion.zenml_model_version,
        "onnx": champion.onnx_uri,
        "mlflow_run_id": champion.run_id,
    }


def collect_status(model_name: str | None = None) -> dict[str, Any]:
    """Returns the project's status as a JSON-ready dict with stable keys.

    Args:
        model_name: The registered model whose champion is reported; None: the
            default name of the latest dataset's task.
    """
    from zenml.client import Client

    from visionops.tasks import DEFAULT_TASK, get_task

    client = Client()
    dataset = _latest_dataset(client)
    model_name = (
        model_name
        or get_task((dataset or {}).get("task") or DEFAULT_TASK).default_model_name
    )
    stack = client.active_stack_model
    tracker = client.active_stack.experiment_tracker
    return {
        "stack": {
            "name": stack.name,
            "components": {
                str(kind): [c.name for c in comps]
                for kind, comps in stack.components.items()
            },
            "tracking_uri": tracker.get_tracking_uri() if tracker else None,  # type: ignore[attr-defined]
        },
        "dataset": dataset,
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
    else:
        images = dataset["images"] or {}
        lines += [
            f"Dataset: version {dataset['version']}, hash {str(dataset['hash'])[:12]}"
            f" ({dataset['task']})",
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
            f"Champion: {champ['name']} v{champ['version']} ({champ['task']})"
            f" ({champ['mlflow_model_uri']})",
            f"  test: {metrics}",
            f"  ONNX: {champ['onnx']} ({champ['onnx_latency_ms']} ms on CPU)",
        ]
    return "\n".join(lines)
