"""Training pipeline: candidates -> selection on val -> test evaluation -> promotion."""

from zenml import pipeline

from steps.training import (
    capture_drift_reference,
    evaluate_champion,
    evaluate_model,
    promote_model,
    select_candidate,
    train_candidate,
)
from visionops.app.lookup import select_training_dataset
from visionops.config import TrainingParameters
from visionops.training.candidates import expand_candidates


@pipeline(name="training")
def training(params: TrainingParameters) -> None:
    """Trains all candidates, keeps the best on val, promotes it only if it wins."""
    # Checked here too, so `--pipeline all` checks the dataset it has just ingested.
    choice = select_training_dataset(params.dataset, params.model.name)
    dataset = choice.artifact
    weights, results = [], []
    for spec in expand_candidates(params, choice.facts.task):
        candidate_weights, result = train_candidate(
            dataset,
            spec,
            params.pretrained,
            params.resume,
            id=f"train_candidate_{spec.index}",
        )
        weights.append(candidate_weights)
        results.append(result)
    model, selected, _, _ = select_candidate(results, weights, params.selection_metric)
    report, onnx, _ = evaluate_model(
        model, dataset, selected, params.evaluation, params.promotion.metric
    )
    capture_drift_reference(onnx, dataset, selected)
    champion = evaluate_champion(dataset, params.model.name, params.evaluation)
    promote_model(
        selected,
        report,
        champion,
        onnx,
        params.promotion,
        params.model.name,
        dataset,
        params.evaluation,
    )
