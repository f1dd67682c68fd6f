"""Step: the served export's features on val and test, kept in the candidate's run."""

import logging

from zenml import log_metadata, step

from visionops.data.version import DatasetVersion
from visionops.training.candidates import CandidateResult, ModelFile
from visionops.training.drift import REFERENCE_ARTIFACT, capture_reference
from visionops.training.tracking import configure_tracking

logger = logging.getLogger(__name__)


@step
def capture_drift_reference(
    onnx: ModelFile, dataset: DatasetVersion, selected: CandidateResult
) -> None:
    """Logs `drift/reference.json` (features, PCA) for later drift reports.

    A graph that is not an Ultralytics export has no head to cut the embedding
    at: the model is trained and promoted all the same, without drift reports.
    """
    configure_tracking()
    try:
        reference = capture_reference(
            selected.task, onnx.path, dataset, run_id=selected.mlflow_run_id
        )
    except ValueError as err:
        logger.warning("No drift reference for this model: %s", err)
        log_metadata({"drift_reference": None, "drift_reference_problem": str(err)})
        return
    log_metadata(
        {
            "drift_reference": REFERENCE_ARTIFACT,
            "reference_images": len(reference.rows),
            "embedding_dims": int(reference.pca.components.shape[0]),
        }
    )
