"""What `run.py --status` reports: the active stack, training's dataset, the
champion, and where the latest reports are."""

from __future__ import annotations

import os
from typing import Any

from visionops.app.schedules import active_schedules
from visionops.tasks import Task, get_task
from visionops.training.tracking import MLFLOW_TIMEOUT_S


class StatusError(RuntimeError):
    """A service the status needs does not answer; the message names it."""


def _training_dataset(
    selector: str, model_name: str | None
) -> tuple[dict[str, Any] | None, Task]:
    """The dataset `--pipeline training` would use now, whether it would pass
    (`model_name` None: the default name of the dataset's task), and its task
    (the default task when there is no dataset)."""
    from visionops.app.lookup import (
        DatasetError,
        check_training_dataset,
        dataset_versions,
        resolve_dataset,
    )

    versions = dataset_versions()
    if not versions:
        return None, get_task()
    try:
        choice = resolve_dataset(selector, versions)
    except DatasetError as err:
        return {"selector": selector, "version": None, "problem": str(err)}, get_task()
    task = choice.facts.task
    problem = None
    model_name = model_name or task.default_model_name
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
        "task": task.name,
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
        "lineage": _lineage(meta),
    }, task


def _lineage(meta: Any) -> dict[str, Any] | None:
    """The parent and what a merge added, from a merged version's metadata."""
    if not meta.get("parent_version"):
        return None
    keys = ("parent_version", "parent_hash", "reviewed", "added", "relabelled")
    return {key: meta.get(key) for key in (*keys, "held_out", "refresh_test")}


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
    from mlflow.exceptions import MlflowException
    from zenml.client import Client

    from visionops.app.lookup import champion_facts

    if not _tracking(Client()):
        return None
    try:
        return champion_facts(name, versions)
    except MlflowException:  # reported once, by the champion's own line
        return None


def _champion(client: Any, name: str) -> dict[str, Any] | None:
    """The MLflow `champion` of model `name`, if the stack tracks one."""
    from mlflow.exceptions import MlflowException

    from visionops.app.stacks import redact
    from visionops.training.champion import Champion
    from visionops.training.tracking import configure_tracking

    if not _tracking(client):
        return None
    try:
        champion = Champion.lookup(name)
    except MlflowException as err:  # not "no champion": the tracker failed
        raise StatusError(
            f"The MLflow tracker at {redact(configure_tracking())} does not answer "
            f"({redact(str(err).splitlines()[0])}): start it, or switch stacks "
            "with `python run.py --stack local`."
        ) from None
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
        "precision": champion.precision,
        "dataset_hash": champion.dataset_hash,
        "zenml_model_version": champion.zenml_model_version,
        "onnx": champion.onnx_uri,
        "mlflow_run_id": champion.run_id,
        "decisions": {
            key: _verdict(champion.decisions, key)
            for key in ("promotion", "quantization")
            if f"{key}.rule" in champion.decisions
        },
    }


def _verdict(tags: dict[str, str], prefix: str) -> dict[str, Any]:
    """A decision's rule, interval and test-split size from its version tags."""

    def number(key: str) -> float | None:
        value = tags.get(f"{prefix}.{key}")
        return float(value) if value else None

    images = tags.get(f"{prefix}.test_images")
    return {
        "rule": tags.get(f"{prefix}.rule"),
        "difference": number("difference"),
        "ci_low": number("ci_low"),
        "ci_high": number("ci_high"),
        "confidence": number("confidence"),
        "test_images": int(images) if images else None,
        "noise": tags.get(f"{prefix}.noise") or None,
    }


def _reports() -> dict[str, str | None]:
    """Where the latest dataset, evaluation and batch reports (HTML) are stored."""
    from zenml.client import Client
    from zenml.materializers.structured_string_materializer import HTML_FILENAME

    from visionops.app.materializers import DATA_DIR, DATASET_HTML
    from visionops.batch.predict import REPORT_HTML
    from visionops.core.names import DATASET, EVALUATION_REPORT, PREDICTIONS

    found: dict[str, str | None] = {}
    for key, artifact, file in (
        ("dataset", DATASET, DATASET_HTML),
        ("evaluation", EVALUATION_REPORT, HTML_FILENAME),
        ("batch", PREDICTIONS, f"{DATA_DIR}/{REPORT_HTML}"),  # the stored outputs
    ):
        try:
            uri = Client().get_artifact_version(artifact).uri
        except KeyError:  # none yet
            found[key] = None
            continue
        found[key] = f"{uri.rstrip('/')}/{file}"
    return found


def _feedback() -> dict[str, Any]:
    """What this machine's feedback store holds per deployed model: requests
    recorded, images kept for review, and those waiting for one."""
    from visionops.feedback.records import counts_per_model
    from visionops.feedback.store import FeedbackStore

    store = FeedbackStore()
    reviews = store.reviews(on_error=lambda path, err: None)
    last = reviews[-1] if reviews else None
    return {
        "store": str(store.root),
        "models": counts_per_model(store),
        "last_review": last
        and {"time": last["time"], "batch": last["batch"], "images": len(last["ids"])},
    }


def collect_status(
    model_name: str | None = None, dataset: str = "latest"
) -> dict[str, Any]:
    """Returns the project's status as a JSON-ready dict with stable keys.

    Args:
        model_name: The registered model whose champion is reported; None: the
            default name of the training dataset's task.
        dataset: The training config's dataset selector; the status names the
            version it means now.
    """
    from zenml.client import Client

    from visionops.app.stacks import StackError, check_active_stack, redact

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
    training, task = _training_dataset(dataset, model_name)
    model_name = model_name or task.default_model_name
    return {
        "stack": {
            "name": stack.name,
            "components": {
                str(kind): [c.name for c in comps]
                for kind, comps in stack.components.items()
            },
            "tracking_uri": redact(tracker.get_tracking_uri()) if tracker else None,  # type: ignore[attr-defined]
        },
        "dataset": training,
        "champion": _champion(client, model_name),
        "reports": _reports(),
        "feedback": _feedback(),
        "drift": _drift(),
        "schedules": active_schedules(),
    }


def _drift() -> dict[str, dict[str, Any]]:
    """The newest drift report per model (`training.drift.latest_verdicts`)."""
    from visionops.training.drift import latest_verdicts

    return latest_verdicts()


def _interval(verdict: dict[str, Any], difference: str) -> str:
    """`INT8 - FP32 +0.0120, 95% CI -0.0100 to +0.0300; 9 test images: ...`."""
    if verdict["ci_low"] is None:
        return f"no interval ({verdict['test_images']} test images)"
    text = (
        f"{difference} {verdict['difference']:+.4f}, "
        f"{verdict['confidence'] or 0.95:.0%} CI {verdict['ci_low']:+.4f} to "
        f"{verdict['ci_high']:+.4f} on {verdict['test_images']} test images"
    )
    return f"{text}; {verdict['noise']}" if verdict["noise"] else text


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
        merged = dataset.get("lineage")
        if merged:
            extra = [f"{merged['added']} added"]
            if merged["relabelled"]:
                extra.append(f"{merged['relabelled']} relabelled")
            if merged["held_out"]:
                extra.append(f"{merged['held_out']} held out")
            if merged["refresh_test"]:
                extra.append("test split redone")
            lines.append(
                f"  lineage: v{dataset['version']} <- v{merged['parent_version']} + "
                f"{merged['reviewed']} reviewed ({', '.join(extra)}; parent hash "
                f"{str(merged['parent_hash'])[:12]})"
            )
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
        from visionops.tasks import get_task

        label = get_task(champ["task"]).metric_label
        metrics = ", ".join(
            f"{label(k)} {v:.4f}" for k, v in sorted(champ["test_metrics"].items())
        )
        lines += [
            f"Champion: {champ['name']} v{champ['version']} ({champ['task']})"
            f" ({champ['mlflow_model_uri']})",
            f"  test: {metrics}",
            f"  ONNX: {champ['onnx']} ({champ['precision'].upper()}, "
            f"{champ['onnx_latency_ms']} ms on CPU)",
        ]
        for key, label, difference in (
            ("promotion", "promotion", "challenger - champion"),
            ("quantization", "INT8 gate", "INT8 - FP32"),
        ):
            verdict = (champ.get("decisions") or {}).get(key)
            if verdict:
                lines.append(
                    f"  {label} ({verdict['rule']}): {_interval(verdict, difference)}"
                )
    reports = status.get("reports") or {}
    lines.append("Reports (latest):")
    for key, pipeline in (
        ("dataset", "ingestion"),
        ("evaluation", "training"),
        ("batch", "batch"),
    ):
        where = reports.get(key) or f"none yet (run: --pipeline {pipeline})"
        lines.append(f"  {key}: {where}")
    lines += _feedback_lines(status.get("feedback"))
    drift = status.get("drift") or {}
    lines.append("Drift (latest per model):" if drift else "Drift: no report yet")
    for name, found in sorted(drift.items()):
        verdict = found["verdict"] or f"no verdict ({found['reason']})"
        named = f" ({', '.join(found['drifted'])})" if found["drifted"] else ""
        lines.append(
            f"  {name} v{found['version']}: {verdict}{named}, {found['images']} "
            f"images from {found['source']} (MLflow run {found['run_id']})"
        )
    schedules = status.get("schedules") or []
    if schedules:
        lines.append("Schedules (remove one: python run.py --unschedule NAME):")
    for item in schedules:
        when = item["cron"] or f"every {item['interval_s']:.0f} s"
        lines.append(
            f"  {item['name']}: {item['pipeline']} at {when} (UTC) on "
            f"{item['orchestrator']}"
        )
    return "\n".join(lines)


def _feedback_lines(feedback: dict[str, Any] | None) -> list[str]:
    """`Predictions recorded (<store>):` and one line per model."""
    if not feedback:
        return []
    if not feedback["models"]:
        return [
            f"Predictions recorded: none yet in {feedback['store']} (serve a model, "
            "or run --pipeline batch)"
        ]
    lines = [f"Predictions recorded ({feedback['store']}):"]
    if last := feedback.get("last_review"):
        lines.append(
            f"  last review batch: {last['images']} image(s) at {last['time'][:19]} "
            f"-> {last['batch']} (merged: see the dataset's lineage line)"
        )
    for row in feedback["models"]:
        sources = ", ".join(f"{k} {v}" for k, v in sorted(row["sources"].items()))
        lines.append(
            f"  {row['name']} v{row['version']}: {row['recorded']} predictions recorded"
            f" ({sources or 'none'}), {row['selected']} images selected, "
            f"{row['waiting']} waiting for review"
        )
    return lines
