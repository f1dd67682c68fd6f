"""Step: the served export's features on val and test, kept in the candidate's run."""

from zenml import log_metadata, step

from visionops.data.version import DatasetVersion
from visionops.training.candidates import CandidateResult, ModelFile
from visionops.training.drift import REFERENCE_ARTIFACT, capture_reference
from visionops.training.tracking import configure_tracking


@step
def capture_drift_reference(
    onnx: ModelFile, dataset: DatasetVersion, selected: CandidateResult
) -> None:
    """Logs `drift/reference.json` (features, PCA) for later drift reports."""
    configure_tracking()
    reference = capture_reference(
        selected.task, onnx.path, dataset, run_id=selected.mlflow_run_id
    )
    log_metadata(
        {
            "drift_reference": REFERENCE_ARTIFACT,
            "reference_images": len(reference.rows),
            "embedding_dims": int(reference.pca.components.shape[0]),
        }
    )
