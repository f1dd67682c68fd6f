"""Step: pick the best candidate on the validation split and compare them all."""

import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
from mlflow.tracking import MlflowClient
from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType
from zenml.types import HTMLString

from visionops.names import (
    CANDIDATE_COMPARISON,
    CANDIDATE_COMPARISON_HTML,
    MODEL,
    SELECTED_CANDIDATE,
)
from visionops.training.candidates import (
    CandidateResult,
    ModelFile,
    best_index,
    comparison_html,
    comparison_rows,
)
from visionops.training.tracking import configure_tracking


@step
def select_candidate(
    results: list[CandidateResult], weights: list[ModelFile], metric: str
) -> tuple[
    Annotated[ModelFile, ArtifactConfig(name=MODEL, artifact_type=ArtifactType.MODEL)],
    Annotated[CandidateResult, SELECTED_CANDIDATE],
    Annotated[pd.DataFrame, CANDIDATE_COMPARISON],
    Annotated[HTMLString, CANDIDATE_COMPARISON_HTML],
]:
    """Selects on validation only; the test split stays unseen until evaluation."""
    winner = best_index(results, metric)
    rows = comparison_rows(results, winner)
    table = pd.DataFrame(rows)
    parent = results[winner].mlflow_parent_run_id
    if parent:  # the pipeline run's MLflow run gets the table too
        configure_tracking()
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "candidate_comparison.csv"
            table.to_csv(csv, index=False)
            MlflowClient().log_artifact(parent, str(csv))
    log_metadata(
        {"selected": results[winner].name, "metric": metric, "candidates": len(results)}
    )
    return (
        weights[winner],
        results[winner],
        table,
        HTMLString(comparison_html(rows, metric)),
    )
