"""Candidates: the grid expanded into runs, and the comparison of their results."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from visionops.config import TrainingParameters, TrainSettings
from visionops.tasks import Task, TaskField, get_task


@dataclass
class ModelFile:
    """One model file (`.pt` weights or an `.onnx` export) as an artifact."""

    path: Path


class CandidateSpec(BaseModel):
    """One grid point: a model and its training settings.

    Attributes:
        registered: The registered model whose champion (or version) a
            `champion@<version>` model names.
    """

    task: TaskField = Field(default_factory=get_task)
    index: int
    name: str
    model: str
    train: TrainSettings
    registered: str | None = None


class CandidateResult(BaseModel):
    """What training one candidate produced, measured on the validation split."""

    task: TaskField = Field(default_factory=get_task)
    name: str
    model: str
    train: dict[str, Any]
    pretrained: bool
    weights_note: str
    started_from: str | None = None  # `<registered model> v<version>`
    val: dict[str, float]
    epochs_run: int
    resumed: bool
    speed_ms: dict[str, float]
    size_mb: float
    run_key: str
    mlflow_run_id: str
    mlflow_parent_run_id: str | None = None


def expand_candidates(params: TrainingParameters, task: Task) -> list[CandidateSpec]:
    """Crosses `models` with every grid point; each becomes one training step.

    Model names become the task's (`yolo11n` -> `yolo11n-cls` for classify).

    Args:
        params: The training parameters.
        task: The dataset's task.

    Raises:
        TaskError: A model name belongs to another task.
    """
    specs: list[CandidateSpec] = []
    points = params.grid_points()
    models = [None] if any("model" in p for p in points) else params.models
    for model in models:
        for point in points:
            name_model = task.model_name(str(point.get("model", model)))
            overrides = {k: v for k, v in point.items() if k != "model"}
            train = TrainSettings.model_validate(
                {**params.train.model_dump(), **overrides}
            )
            label = "-".join(f"{k}={v}" for k, v in sorted(overrides.items()))
            index = len(specs)
            # `champion@3` names the candidate c0-champion-v3.
            stem = Path(str(name_model)).stem.replace("@", "-v")
            specs.append(
                CandidateSpec(
                    task=task,
                    index=index,
                    name=f"c{index}-{stem}" + (f"-{label}" if label else ""),
                    model=str(name_model),
                    train=train,
                    registered=params.model.name,
                )
            )
    return specs


def best_index(results: list[CandidateResult], metric: str) -> int:
    """The candidate with the highest validation `metric` (the first on ties)."""

    def score(r: CandidateResult) -> float:
        value = r.val.get(metric, float("nan"))
        return -math.inf if math.isnan(value) else value

    return max(range(len(results)), key=lambda i: (score(results[i]), -i))


def comparison_rows(
    results: list[CandidateResult], winner: int
) -> list[dict[str, Any]]:
    """One row per candidate: settings, validation metrics, speed and size."""
    rows = []
    for i, r in enumerate(results):
        rows.append(
            {
                "candidate": r.name,
                "selected": i == winner,
                "model": r.model,
                "pretrained": r.pretrained,
                **{
                    f"train.{k}": v
                    for k, v in r.train.items()
                    if k in ("imgsz", "epochs", "lr0", "batch", "optimizer")
                },
                "epochs_run": r.epochs_run,
                **{f"val.{k}": round(v, 4) for k, v in r.val.items()},
                "inference_ms": round(r.speed_ms.get("inference", float("nan")), 2),
                "size_mb": round(r.size_mb, 2),
                "mlflow_run_id": r.mlflow_run_id,
            }
        )
    return rows


def comparison_html(rows: list[dict[str, Any]], metric: str) -> str:
    """The comparison table as HTML with the selected candidate highlighted."""
    if not rows:
        return "<p>No candidates.</p>"
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr{}>{}</tr>".format(
            ' style="background:#d8f5d0;font-weight:bold"' if row["selected"] else "",
            "".join(f"<td>{html.escape(str(row[c]))}</td>" for c in columns),
        )
        for row in rows
    )
    return (
        "<html><body style='font-family:sans-serif'>"
        f"<h3>Candidates (selected on validation {html.escape(metric)})</h3>"
        "<table border=1 cellpadding=4 style='border-collapse:collapse'>"
        f"<tr>{head}</tr>{body}</table></body></html>"
    )
