"""Step: fetch the ONNX export of the registered model's `champion` version."""

from typing import Annotated

from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType

from visionops.app.materializers import work_dir
from visionops.core.names import CHAMPION_INFO, CHAMPION_ONNX
from visionops.training.candidates import ModelFile
from visionops.training.champion import Champion
from visionops.training.tracking import configure_tracking


# Never cached: the alias can move between two runs with the same model name.
@step(enable_cache=False)
def load_champion(
    model_name: str,
) -> tuple[
    Annotated[
        ModelFile,
        ArtifactConfig(name=CHAMPION_ONNX, artifact_type=ArtifactType.MODEL),
    ],
    Annotated[Champion, CHAMPION_INFO],
]:
    """Downloads the ONNX export of the run behind `models:/<name>@champion`."""
    configure_tracking()
    champion = Champion.get(model_name)
    onnx = champion.fetch_onnx(work_dir("champion-onnx"))
    log_metadata(
        {
            "model_uri": champion.model_uri,
            "model_version": champion.version,
            "mlflow_run_id": champion.run_id,
            "task": champion.task,
            "onnx": champion.onnx_artifact,
        }
    )
    return ModelFile(onnx), champion
