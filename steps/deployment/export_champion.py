"""Step: fetch the champion's weights and export them to ONNX at the serving size."""

from typing import Annotated, Any

from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType

from visionops.inference import export_onnx
from visionops.materializers import work_dir
from visionops.names import CHAMPION_LINEAGE, CHAMPION_ONNX, CHAMPION_WEIGHTS
from visionops.training.candidates import ModelFile
from visionops.training.tracking import champion_lineage, configure_tracking


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
    """Downloads the `champion` weights and exports them to ONNX (the .pt is kept)."""
    configure_tracking()
    out = work_dir("champion-export")
    lineage, weights = champion_lineage(model_name, out / "weights")
    onnx = export_onnx(weights, lineage["serving_imgsz"], out_dir=out / "onnx")
    log_metadata({"lineage": lineage})
    return ModelFile(weights), ModelFile(onnx), lineage
