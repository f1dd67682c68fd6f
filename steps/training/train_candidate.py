"""Step: train one candidate as one nested MLflow run."""

import logging
from typing import Annotated

import mlflow
from zenml import get_step_context, log_metadata, step

from visionops.data.version import CARD_FILE, DatasetVersion
from visionops.env import state_dir
from visionops.names import CANDIDATE_RESULT, CANDIDATE_WEIGHTS
from visionops.training.candidates import CandidateResult, CandidateSpec, ModelFile
from visionops.training.tracking import code_version, log_dir_artifacts, system_info
from visionops.training.yolo import resolve_weights, run_key, train

logger = logging.getLogger(__name__)
PLOTS = ("*.png", "*.jpg", "results.csv", "args.yaml")


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
    choice = resolve_weights(spec.model, pretrained)
    if not choice.pretrained:
        logger.warning("%s: %s (recorded as pretrained=false).", spec.name, choice.note)
    run = mlflow.active_run()
    assert run is not None  # the experiment tracker started it
    context = get_step_context()
    key = run_key(spec.model, spec.train, dataset.hash)
    mlflow.log_params(
        {
            **spec.train.model_dump(),
            "model": spec.model,
            "candidate": spec.name,
            "pretrained": choice.pretrained,
            "weights_source": choice.source,
            "dataset_hash": dataset.hash,
        }
    )
    mlflow.set_tags(
        {
            **system_info(),
            **code_version(),
            "dataset_hash": dataset.hash,
            "candidate": spec.name,
            "zenml.pipeline_run_id": str(context.pipeline_run.id),
            "zenml.pipeline_run_name": context.pipeline_run.name,
            "zenml.step": context.step_run.name,
        }
    )
    mlflow.log_dict(dataset.card, f"dataset/{CARD_FILE}")
    outcome = train(
        spec.model,
        spec.train,
        dataset.data_yaml,
        state_dir() / "runs" / key,
        source=choice.source,
        resume=resume,
        on_epoch_end=lambda epoch, metrics: mlflow.log_metrics(metrics, step=epoch),
    )
    mlflow.log_metrics({f"val_{k}": v for k, v in outcome.val_metrics.items()})
    mlflow.log_artifact(str(outcome.best), "weights")
    log_dir_artifacts(run.info.run_id, outcome.save_dir, "training", PLOTS)
    result = CandidateResult(
        name=spec.name,
        model=spec.model,
        train=spec.train.model_dump(),
        pretrained=choice.pretrained,
        weights_note=choice.note,
        val=outcome.val_metrics,
        epochs_run=outcome.epochs_run,
        resumed=outcome.resumed,
        speed_ms=outcome.speed_ms,
        size_mb=outcome.best.stat().st_size / 1e6,
        run_key=key,
        mlflow_run_id=run.info.run_id,
        mlflow_parent_run_id=mlflow.get_run(run.info.run_id).data.tags.get(
            "mlflow.parentRunId"
        ),
    )
    log_metadata(
        {
            "candidate": spec.name,
            "val": outcome.val_metrics,
            "pretrained": choice.pretrained,
        }
    )
    return ModelFile(outcome.best), result
