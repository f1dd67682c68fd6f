"""MLflow through the active stack: candidate runs, system info, the model registry."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from visionops.core.env import project_root, state_dir
from visionops.core.files import locked, sha256_file

# MLflow's error codes for a model or alias that does not exist.
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")

PACKAGES = (
    "ultralytics",
    "torch",
    "torchvision",
    "zenml",
    "mlflow",
    "onnxruntime",
    "numpy",
)
# MLflow keeps at most this many characters of a dataset digest.
MLFLOW_DIGEST_CHARS = 36
# Seconds one tracker request may take where an answer is wanted at once
# (`--status`, a backup's health check), instead of MLflow's minutes of retries.
MLFLOW_TIMEOUT_S = 10
# Run tag holding the sha256 of a logged file: `sha256.<artifact path>`.
SHA256_TAG_PREFIX = "sha256."


class TrackingError(RuntimeError):
    """The active stack cannot track experiments."""


class ArtifactChecksumError(RuntimeError):
    """A downloaded artifact is not the file its run logged (one-line message)."""


def configure_tracking() -> str:
    """Points MLflow at the active stack's experiment tracker; returns the URI."""
    from zenml.client import Client

    tracker = Client().active_stack.experiment_tracker
    if tracker is None:
        raise TrackingError(
            "The active ZenML stack has no experiment tracker. Apply the local stack "
            "with `python run.py --stack local` (or `make init`) and run again."
        )
    tracker.configure_mlflow()  # type: ignore[attr-defined]
    return str(tracker.get_tracking_uri())  # type: ignore[attr-defined]


def code_version() -> dict[str, str]:
    """The git commit of the project and whether the tree had local changes."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args],
                cwd=project_root(),
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


def system_info() -> dict[str, str]:
    """Versions and hardware a result depends on, as MLflow tags."""
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": str(os.cpu_count()),
        "cuda": str(torch.cuda.is_available()).lower(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    for package in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            info[f"version.{package}"] = importlib.metadata.version(package)
    return info


def log_dir_artifacts(
    run_id: str, folder: Path, artifact_path: str, patterns: tuple[str, ...]
) -> None:
    """Logs the files of `folder` matching `patterns` to a run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            if path.is_file():
                client.log_artifact(run_id, str(path), artifact_path)


def log_checked_file(run_id: str, path: Path, artifact_dir: str) -> str:
    """Logs one file to a run with its sha256 as a run tag; returns its artifact path.

    `download_run_file` checks every later download against that tag, so a file
    swapped in the artifact store is refused before anything opens it.
    """
    from mlflow.tracking import MlflowClient

    artifact_path = f"{artifact_dir}/{path.name}"
    client = MlflowClient()
    client.log_artifact(run_id, str(path), artifact_dir)
    client.set_tag(run_id, SHA256_TAG_PREFIX + artifact_path, sha256_file(path))
    return artifact_path


def download_run_file(run_id: str, artifact_path: str, dest: Path) -> Path:
    """Downloads one artifact of a run into `dest` and returns its local path.

    Raises:
        ArtifactChecksumError: The run recorded a sha256 for the file
            (`log_checked_file`) and the downloaded bytes have another one; the
            file is deleted.
    """
    import mlflow

    dest.mkdir(parents=True, exist_ok=True)
    local = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact_path, dst_path=str(dest)
        )
    )
    tags = mlflow.get_run(run_id).data.tags
    # Files logged before checksums were recorded have no tag; Ultralytics
    # weights are still opened with `weights_only=True` (`engine.ultralytics`).
    expected = tags.get(SHA256_TAG_PREFIX + artifact_path)
    if expected is not None:
        actual = sha256_file(local)
        if actual != expected:
            local.unlink()
            raise ArtifactChecksumError(
                f"{artifact_path} of MLflow run {run_id} is not the file the run "
                f"logged: sha256 recorded {expected}, downloaded {actual}; refusing "
                "to open it (the artifact store was changed after training)."
            )
    return local


def register_version(
    model_name: str, model_uri: str, tags: dict[str, str], description: str = ""
) -> str:
    """Registers a logged model as a new version; returns the version number.

    `mlflow.register_model` resolves MLflow 3 `models:/<model id>` URIs to their
    run and storage location; a tracking server rejects them as a raw version
    source, which `MlflowClient.create_model_version` would send.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(model_name, description=description)
    version = mlflow.register_model(
        model_uri, model_name, tags={k: str(v) for k, v in tags.items()}
    )
    return str(version.version)


def set_alias(model_name: str, alias: str, version: str) -> None:
    """Points an alias (`champion`, `challenger`) at a version."""
    from mlflow.tracking import MlflowClient

    MlflowClient().set_registered_model_alias(model_name, alias, version)


class AliasMovedError(RuntimeError):
    """An alias no longer points where it did when a decision was made.

    Attributes:
        current: The version it points at now (None: unset).
    """

    def __init__(self, message: str, current: str | None) -> None:
        super().__init__(message)
        self.current = current


def alias_version(model_name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the model or alias is missing."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        version = MlflowClient().get_model_version_by_alias(model_name, alias)
    except MlflowException as err:
        if err.error_code in NOT_FOUND:
            return None
        raise
    return str(version.version)


def move_alias(model_name: str, alias: str, version: str, expected: str | None) -> None:
    """Points `alias` at `version` only if it still points at `expected`.

    Read, compare and move happen under an exclusive lock file in the state
    folder, which serialises the trainings of one machine (the local stack). MLflow
    has no compare-and-set, so against a tracking server shared by several
    machines this is an optimistic check: the alias is re-read just before it
    is moved, which leaves only that moment open instead of a whole training.

    Raises:
        AliasMovedError: The alias points elsewhere now; nothing was moved.
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name)
    with locked(state_dir() / "locks" / f"alias-{safe}-{alias}.lock"):
        current = alias_version(model_name, alias)
        if current != expected:
            raise AliasMovedError(
                f"{alias} of {model_name!r} moved from "
                f"{f'v{expected}' if expected else 'none'} to "
                f"{f'v{current}' if current else 'none'}",
                current,
            )
        set_alias(model_name, alias, version)


def dataset_input(card: dict[str, Any], root: Path) -> Any:
    """The dataset card as an MLflow dataset, for `mlflow.log_input`.

    MLflow's run page then shows the dataset (name, digest, source) instead of
    "-", and its profile lists the images per split. The digest is the content
    hash's first 36 characters (MLflow stores at most 36); the full hash is the
    input's `dataset_hash` tag (`dataset_input_tags`).

    Args:
        card: The dataset card (`DatasetVersion.card`).
        root: The dataset version's folder (the source shown).
    """
    from mlflow.data.meta_dataset import MetaDataset

    # Registered when mlflow.data is imported, so mypy cannot see it.
    from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]

    splits = {
        split: int(counts.get("images", 0))
        for split, counts in (card.get("splits") or {}).items()
    }
    profile = {
        "task": card.get("task", ""),
        "source": str(card.get("source", "")),
        "classes": len(card.get("class_names") or []),
        "images": splits,
    }

    class CardDataset(MetaDataset):
        @property
        def profile(self) -> dict[str, Any]:
            return profile

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(profile)}

    name = Path(str(card.get("source") or root)).name or root.name
    return CardDataset(
        LocalArtifactDatasetSource(str(root)),
        name=f"{name}@{card['hash'][:12]}",
        digest=card["hash"][:MLFLOW_DIGEST_CHARS],
    )


def dataset_input_tags(card: dict[str, Any]) -> dict[str, str]:
    """Tags of the dataset input: the full hash, the images per split, and a
    merged version's parent (`parent_version`, `parent_hash`)."""
    splits = card.get("splits") or {}
    lineage = card.get("lineage") or {}
    return {
        "dataset_hash": card["hash"],
        **{f"{s}_images": str(c.get("images", 0)) for s, c in splits.items()},
        **{k: str(v) for k, v in lineage.items() if k.startswith("parent_")},
    }


def stack_artifact_location() -> str | None:
    """Where the active ZenML stack's MLflow tracker keeps artifacts, if it decides.

    A tracker without a tracking_uri (the local stack) keeps its SQLite store and
    its artifacts inside the stack's artifact store, as ZenML sets them up; a
    tracking server decides for itself (None).
    """
    from zenml.client import Client
    from zenml.integrations.mlflow.experiment_trackers import (
        mlflow_experiment_tracker as zenml_mlflow,
    )

    stack = Client().active_stack
    tracker = stack.experiment_tracker
    if tracker is None or getattr(tracker.config, "tracking_uri", None):
        return None
    root = os.path.abspath(
        os.path.join(
            stack.artifact_store.path, zenml_mlflow.LOCAL_MLFLOW_ARTIFACTS_DIRECTORY
        )
    )
    return "file:" + root
