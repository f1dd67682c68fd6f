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


def collect_status() -> dict[str, Any]:
    """Returns the project's status as a JSON-ready dict with stable keys."""
    from zenml.client import Client

    client = Client()
    stack = client.active_stack_model
    return {
        "stack": {
            "name": stack.name,
            "components": {
                str(kind): [c.name for c in comps]
                for kind, comps in stack.components.items()
            },
        },
        "dataset": _latest_dataset(client),
        "champion": None,
    }


def format_status(status: dict[str, Any]) -> str:
    """Renders the status for people."""
    lines = [f"Active stack: {status['stack']['name']}"]
    for kind, names in sorted(status["stack"]["components"].items()):
        lines.append(f"  {kind}: {', '.join(names)}")
    dataset = status["dataset"]
    if dataset is None:
        lines.append("Dataset: none yet (run: python run.py --pipeline ingestion)")
    else:
        images = dataset["images"] or {}
        lines += [
            f"Dataset: version {dataset['version']}, hash {str(dataset['hash'])[:12]}",
            f"  path: {dataset['path']}",
            f"  source: {dataset['source']}",
            "  images: " + ", ".join(f"{k} {v}" for k, v in images.items()),
            f"  items in {dataset['items_in']} = accepted {dataset['accepted']}"
            f" + quarantined {dataset['quarantined']};"
            f" faces blurred {dataset['faces_blurred']}",
        ]
    lines.append(
        "Champion: none yet"
        if status["champion"] is None
        else f"Champion: {status['champion']}"
    )
    return "\n".join(lines)
