"""Step: train one candidate as one nested MLflow run."""

from typing import Annotated

from zenml import get_step_context, log_metadata, step

from visionops.core.names import CANDIDATE_RESULT, CANDIDATE_WEIGHTS
from visionops.data.version import DatasetVersion
from visionops.training.candidates import CandidateResult, CandidateSpec, ModelFile
from visionops.training.stages import train_candidate as train


@step(experiment_tracker=True, settings={"experiment_tracker": {"nested": True}})
def train_candidate(
    dataset: DatasetVersion,
    spec: CandidateSpec,
    pretrained: str = "auto",
    resume: bool = False,
) -> tuple[
    Annotated[ModelFile, CANDIDATE_WEIGHTS],
    Annotated[CandidateResult, CANDIDATE_RESULT],
]:
    """Trains a candidate; params, epoch metrics, plots and weights go to MLflow."""
    context = get_step_context()
    weights, result = train(
        dataset,
        spec,
        pretrained=pretrained,
        resume=resume,
        tags={
            "zenml.pipeline_run_id": str(context.pipeline_run.id),
            "zenml.pipeline_run_name": context.pipeline_run.name,
            "zenml.step": context.step_run.name,
        },
    )
    log_metadata(
        {"candidate": spec.name, "val": result.val, "pretrained": result.pretrained}
    )
    return weights, result
