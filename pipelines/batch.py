"""Batch inference pipeline: the champion's ONNX export over a folder of images."""

from zenml import pipeline

from steps.batch import load_champion, predict_folder
from visionops.app.lookup import find_dataset
from visionops.config import BatchParameters, dataset_split


@pipeline(name="batch")
def batch(params: BatchParameters) -> None:
    """Resolves the champion, predicts every image, keeps the files and a report."""
    model, champion = load_champion(params.model.name)
    # A dataset split is an input artifact, so the run's lineage names the version.
    dataset = find_dataset(params.dataset) if dataset_split(params.source) else None
    predict_folder(
        model,
        champion,
        params.source,
        params.settings(),
        dataset,
        feedback=params.feedback,
        drift=params.drift,
        store=params.store,
    )
