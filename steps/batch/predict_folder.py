"""Step: run the champion over a folder (or a dataset split) and keep the outputs."""

from typing import Annotated

from zenml import log_metadata, step
from zenml.types import HTMLString

from visionops.app.materializers import work_dir
from visionops.batch import predict as batch
from visionops.batch.predict import PredictionSet
from visionops.batch.report import write_report
from visionops.config import (
    BatchSettings,
    DriftSettings,
    FeedbackSettings,
    dataset_split,
)
from visionops.core.env import project_path
from visionops.core.names import BATCH_REPORT, PREDICTIONS
from visionops.data.version import DatasetVersion
from visionops.feedback.drift import read_result
from visionops.tasks import get_task
from visionops.training.candidates import ModelFile
from visionops.training.champion import Champion
from visionops.training.drift import fetch_reference, log_drift


# Never cached: a folder can change behind the same path, and the champion with it.
@step(enable_cache=False)
def predict_folder(
    model: ModelFile,
    champion: Champion,
    source: str,
    settings: BatchSettings,
    dataset: DatasetVersion | None = None,
    feedback: FeedbackSettings | None = None,
    drift: DriftSettings | None = None,
    store: str | None = None,
) -> tuple[
    Annotated[PredictionSet, PREDICTIONS],
    Annotated[HTMLString, BATCH_REPORT],
]:
    """Predicts every image as the champion's task does; bad files are listed
    with a reason, never fatal.

    Args:
        model: The champion's ONNX export.
        champion: Which registered model version it is.
        source: A folder (relative to the project root if not absolute), or
            `dataset:<split>` with `dataset` the dataset version to read.
        settings: Thresholds, batch size, threads, device, grid size.
        dataset: The dataset version of a `dataset:<split>` source.
        feedback: What is recorded per image and kept for review (None: nothing).
        drift: The drift report's thresholds; with a champion that kept a
            reference, `drift.html` and `drift.json` go beside the outputs.
        store: The feedback store's folder (None: this machine's).
    """
    split = dataset_split(source)
    if split is not None:
        if dataset is None:
            raise ValueError(f"{source}: pass the dataset version to read it from")
        folder = get_task(dataset.task).split_dir(dataset, split)
    else:
        folder = project_path(source)
    drift = drift or DriftSettings()
    reference = (
        fetch_reference(champion, work_dir("drift-reference"))
        if drift.enabled
        else None
    )
    predictions = batch.predict_folder(
        folder,
        model.path,
        work_dir("predictions"),
        settings,
        task=champion.get_task(),
        source=source,
        model={**champion.model_dump(), "model_uri": champion.model_uri},
        feedback=feedback,
        reference=reference,
        drift=drift,
        store=store,
    )
    summary = predictions.summary
    log_metadata(
        {
            key: summary[key]
            for key in ("task", "images_in", "predicted", "bad", "images_per_s")
        }
        | {"per_class": summary["per_class"], "source": source}
    )
    if predictions.drift is not None:
        run_id = log_drift(predictions.drift.parent, champion, source="batch")
        result = read_result(predictions.drift)
        log_metadata(
            {"drift": {"verdict": result.verdict, "drifted": result.drifted}}
            | {"drift_mlflow_run_id": run_id}
        )
    # report.html beside the outputs: exported with them to outputs/batch/<time>/.
    return predictions, HTMLString(write_report(predictions))
