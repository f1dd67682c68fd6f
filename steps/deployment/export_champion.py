"""Step: fetch the champion's ONNX export (the one evaluation timed) and weights."""

from typing import Annotated, Any

from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType

from visionops.app.materializers import work_dir
from visionops.core.names import CHAMPION_LINEAGE, CHAMPION_ONNX, CHAMPION_WEIGHTS
from visionops.training.candidates import ModelFile
from visionops.training.champion import Champion
from visionops.training.tracking import configure_tracking


# Never cached: the champion alias moves.
@step(enable_cache=False)
def export_champion(
    model_name: str,
) -> tuple[
    Annotated[
        ModelFile,
        ArtifactConfig(name=CHAMPION_WEIGHTS, artifact_type=ArtifactType.MODEL),
    ],
    Annotated[
        ModelFile, ArtifactConfig(name=CHAMPION_ONNX, artifact_type=ArtifactType.MODEL)
    ],
    Annotated[dict[str, Any], CHAMPION_LINEAGE],
]:
    """Downloads the `champion`'s ONNX export and `.pt`; no second export."""
    configure_tracking()
    champion = Champion.get(model_name)
    out = work_dir("champion-export")
    onnx = champion.fetch_onnx(out / "onnx")
    weights = champion.fetch_weights(out / "weights")
    lineage = champion.lineage()
    log_metadata({"lineage": lineage})
    return ModelFile(weights), ModelFile(onnx), lineage
