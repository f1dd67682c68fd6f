"""Step: pick the best candidate on the validation split and compare them all."""

from typing import Annotated

import pandas as pd
from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType
from zenml.types import HTMLString

from visionops.core.names import (
    CANDIDATE_COMPARISON,
    CANDIDATE_COMPARISON_HTML,
    MODEL,
    SELECTED_CANDIDATE,
)
from visionops.training.candidates import CandidateResult, ModelFile
from visionops.training.stages import select_candidate as select
from visionops.training.tracking import configure_tracking


@step
def select_candidate(
    results: list[CandidateResult], weights: list[ModelFile], metric: str | None
) -> tuple[
    Annotated[ModelFile, ArtifactConfig(name=MODEL, artifact_type=ArtifactType.MODEL)],
    Annotated[CandidateResult, SELECTED_CANDIDATE],
    Annotated[pd.DataFrame, CANDIDATE_COMPARISON],
    Annotated[HTMLString, CANDIDATE_COMPARISON_HTML],
]:
    """Selects on validation only; the test split stays unseen until evaluation."""
    configure_tracking()
    selection = select(results, metric)
    winner = results[selection.index]
    count = len(results)
    log_metadata(
        {"selected": winner.name, "metric": selection.metric, "candidates": count}
    )
    return (
        weights[selection.index],
        winner,
        pd.DataFrame(selection.rows),
        HTMLString(selection.html),
    )
