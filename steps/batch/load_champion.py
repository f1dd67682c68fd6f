"""Step: fetch the ONNX export of the registered model's `champion` version."""

from typing import Annotated

from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType

from visionops.batch import ChampionInfo, fetch_champion
from visionops.materializers import work_dir
from visionops.names import CHAMPION_INFO, CHAMPION_ONNX
from visionops.training.candidates import ModelFile
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
    Annotated[ChampionInfo, CHAMPION_INFO],
]:
    """Downloads `onnx/*.onnx` of the MLflow run behind `models:/<name>@champion`."""
    configure_tracking()
    onnx, info = fetch_champion(model_name, work_dir("champion-onnx"))
    log_metadata(
        {
            "model_uri": info.model_uri,
            "model_version": info.version,
            "mlflow_run_id": info.run_id,
            "onnx": info.onnx_artifact,
        }
    )
    return ModelFile(onnx), info
