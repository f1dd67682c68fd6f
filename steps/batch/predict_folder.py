"""Step: run the champion over a folder (or a dataset split) and keep the outputs."""

from pathlib import Path
from typing import Annotated

from zenml import log_metadata, step
from zenml.types import HTMLString

from visionops import batch
from visionops.batch import BatchSettings, PredictionSet, dataset_split
from visionops.batch_report import batch_html
from visionops.champion import Champion
from visionops.data.version import DatasetVersion
from visionops.env import project_root
from visionops.materializers import work_dir
from visionops.names import BATCH_REPORT, PREDICTIONS
from visionops.training.candidates import ModelFile


# Never cached: a folder can change behind the same path, and the champion with it.
@step(enable_cache=False)
def predict_folder(
    model: ModelFile,
    champion: Champion,
    source: str,
    settings: BatchSettings,
    dataset: DatasetVersion | None = None,
) -> tuple[
    Annotated[PredictionSet, PREDICTIONS],
    Annotated[HTMLString, BATCH_REPORT],
]:
    """Predicts every image; bad files are listed with a reason, never fatal.

    Args:
        model: The champion's ONNX export.
        champion: Which registered model version it is.
        source: A folder (relative to the project root if not absolute), or
            `dataset:<split>` with `dataset` the dataset version to read.
        settings: Thresholds, batch size, threads, device, grid size.
        dataset: The dataset version of a `dataset:<split>` source.
    """
    split = dataset_split(source)
    if split is not None:
        if dataset is None:
            raise ValueError(f"{source}: pass the dataset version to read it from")
        folder = dataset.root / "images" / split
    else:
        folder = Path(source) if Path(source).is_absolute() else project_root() / source
    predictions = batch.predict_folder(
        folder,
        model.path,
        work_dir("predictions"),
        settings,
        source=source,
        model={**champion.model_dump(), "model_uri": champion.model_uri},
    )
    summary = predictions.summary
    log_metadata(
        {
            key: summary[key]
            for key in ("images_in", "predicted", "bad", "boxes", "images_per_s")
        }
        | {"boxes_per_class": summary["boxes_per_class"], "source": source}
    )
    return predictions, HTMLString(batch_html(predictions))
