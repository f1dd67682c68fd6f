"""Export: everything an MLflow tracker holds, written into one backup zip."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionops.app.backup.archive import (
    DATA,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MODEL_FILES,
    RESTORE_LOCK,
    RUN_FILES,
    BackupError,
)
from visionops.app.backup.tracker import (
    PAGE,
    check_tracker,
    describe,
    mlflow_client,
    name_filter,
    pages,
    public_uri,
    quiet,
)
from visionops.core.files import durable_replace


@dataclass
class BackupSummary:
    """What a backup wrote."""

    path: Path
    source: str
    counts: dict[str, int]


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _write_tree(archive: zipfile.ZipFile, local: Path, prefix: str) -> list[dict]:
    """Adds the files under `local` as `prefix/<relative path>`; lists them."""
    listed = []
    for path in _files_under(local):
        rel = path.relative_to(local).as_posix()
        archive.write(path, f"{prefix}/{rel}")
        listed.append({"path": rel, "size": path.stat().st_size})
    return listed


def _backup_run(client: Any, run: Any, archive: zipfile.ZipFile, tmp: Path) -> dict:
    info, data = run.info, run.data
    metrics = {
        key: [
            [m.value, m.timestamp, m.step]
            for m in client.get_metric_history(info.run_id, key)
        ]
        for key in sorted(data.metrics)
    }
    artifacts: list[dict] = []
    if client.list_artifacts(info.run_id):
        local = Path(client.download_artifacts(info.run_id, "", str(tmp / info.run_id)))
        artifacts = _write_tree(archive, local, f"{RUN_FILES}/{info.run_id}")
        shutil.rmtree(tmp / info.run_id, ignore_errors=True)
    datasets = []
    for item in run.inputs.dataset_inputs if run.inputs else []:
        d = item.dataset
        datasets.append(
            {
                "name": d.name,
                "digest": d.digest,
                "source_type": d.source_type,
                "source": d.source,
                "schema": d.schema,
                "profile": d.profile,
                "tags": {t.key: t.value for t in item.tags},
            }
        )
    outputs = [
        {"model_id": o.model_id, "step": o.step}
        for o in (run.outputs.model_outputs if run.outputs else [])
    ]
    return {
        "id": info.run_id,
        "name": info.run_name,
        "status": info.status,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "artifact_uri": info.artifact_uri,
        "params": dict(data.params),
        "tags": dict(data.tags),
        "metrics": metrics,
        "datasets": datasets,
        "outputs": outputs,
        "artifacts": artifacts,
    }


def _backup_logged_model(
    model: Any, tracking_uri: str, archive: zipfile.ZipFile, tmp: Path
) -> dict:
    import mlflow

    artifacts: list[dict] = []
    status = str(getattr(model.status, "name", model.status))
    if status == "READY":
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=model.artifact_location,
                dst_path=str(tmp / model.model_id),
                tracking_uri=tracking_uri,
            )
        )
        artifacts = _write_tree(archive, local, f"{MODEL_FILES}/{model.model_id}")
        shutil.rmtree(tmp / model.model_id, ignore_errors=True)
    return {
        "id": model.model_id,
        "name": model.name,
        "source_run_id": model.source_run_id,
        "model_type": model.model_type,
        "status": status,
        "tags": dict(model.tags or {}),
        "params": dict(model.params or {}),
        "artifact_location": model.artifact_location,
        "artifacts": artifacts,
    }


def _backup_registry(client: Any) -> list[dict]:
    models = []
    for rm in pages(client.search_registered_models, max_results=PAGE):
        if rm.name == RESTORE_LOCK:
            continue  # a restore running now, not a model
        versions = sorted(
            pages(client.search_model_versions, name_filter(rm.name), PAGE),
            key=lambda v: int(v.version),
        )
        models.append(
            {
                "name": rm.name,
                "description": rm.description or "",
                "tags": dict(rm.tags or {}),
                "aliases": {a: str(v) for a, v in (rm.aliases or {}).items()},
                "versions": [
                    {
                        "version": str(v.version),
                        "source": v.source,
                        "run_id": v.run_id,
                        "model_id": getattr(v, "model_id", None),
                        "description": v.description or "",
                        "tags": dict(v.tags or {}),
                        "stage": v.current_stage or "None",
                        "run_link": v.run_link or "",
                    }
                    for v in versions
                ],
            }
        )
    return models


def backup(path: Path, tracking_uri: str) -> BackupSummary:
    """Writes everything the tracker holds into a zip at `path`.

    Args:
        path: The zip to write (replaced atomically if it exists).
        tracking_uri: The MLflow tracker to read (e.g. from `configure_tracking()`).

    Returns:
        Where it went, from where, and how many of each thing it holds.

    Raises:
        BackupError: If the tracker does not answer or reading from it fails.
    """
    from mlflow.entities import ViewType

    check_tracker(tracking_uri)
    client = mlflow_client(tracking_uri)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own: two backups to one path each write their own file, and
    # the last to finish replaces the zip with a whole one.
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    partial = Path(name)
    experiments: list[dict] = []
    try:
        with (
            quiet(),
            tempfile.TemporaryDirectory(prefix="visionops-backup-") as tmp,
            zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive,
        ):
            for exp in pages(
                client.search_experiments,
                view_type=ViewType.ACTIVE_ONLY,
                max_results=PAGE,
            ):
                runs = [
                    _backup_run(client, run, archive, Path(tmp))
                    for run in pages(
                        client.search_runs,
                        [exp.experiment_id],
                        run_view_type=ViewType.ACTIVE_ONLY,
                        max_results=PAGE,
                        order_by=["attributes.start_time ASC"],
                    )
                ]
                models = [
                    _backup_logged_model(m, tracking_uri, archive, Path(tmp))
                    for m in pages(
                        client.search_logged_models,
                        [exp.experiment_id],
                        max_results=100,
                    )
                ]
                experiments.append(
                    {
                        "id": exp.experiment_id,
                        "name": exp.name,
                        "tags": dict(exp.tags or {}),
                        "runs": runs,
                        "logged_models": models,
                    }
                )
            registry = _backup_registry(client)
            counts = {
                "experiments": len(experiments),
                "runs": sum(len(e["runs"]) for e in experiments),
                "metric_points": sum(
                    len(h)
                    for e in experiments
                    for r in e["runs"]
                    for h in r["metrics"].values()
                ),
                "run_artifact_files": sum(
                    len(r["artifacts"]) for e in experiments for r in e["runs"]
                ),
                "logged_models": sum(len(e["logged_models"]) for e in experiments),
                "registered_models": len(registry),
                "model_versions": sum(len(m["versions"]) for m in registry),
                "aliases": sum(len(m["aliases"]) for m in registry),
            }
            import mlflow

            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "source_tracking_uri": public_uri(tracking_uri),
                "mlflow_version": mlflow.__version__,
                "counts": counts,
            }
            archive.writestr(
                DATA,
                json.dumps({"experiments": experiments, "registered_models": registry}),
            )
            archive.writestr(MANIFEST, json.dumps(manifest, indent=2))
        durable_replace(partial, path)
    except Exception as err:  # the tracker's, its artifact store's, the disk's
        partial.unlink(missing_ok=True)
        raise BackupError(
            f"Backup of {public_uri(tracking_uri)} failed: {describe(err)}"
        ) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupSummary(path, public_uri(tracking_uri), counts)


def format_backup(summary: BackupSummary) -> str:
    """The backup summary for people."""
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in summary.counts.items())
    return f"Backed up {summary.source} to {summary.path}: {counts}."
