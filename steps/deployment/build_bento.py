"""Step: store the model in BentoML with its lineage and build the Bento."""

from typing import Annotated, Any

import bentoml
from mlflow.tracking import MlflowClient
from zenml import log_metadata, step

from visionops.config import FeedbackSettings
from visionops.core.names import BENTO
from visionops.serving.bento import build_bento as build
from visionops.serving.bento import save_model
from visionops.training.candidates import ModelFile
from visionops.training.tracking import configure_tracking


@step(enable_cache=False)
def build_bento(
    weights: ModelFile,
    onnx: ModelFile,
    lineage: dict[str, Any],
    feedback: FeedbackSettings,
) -> Annotated[bentoml.Bento, BENTO]:
    """Saves the model (ONNX + .pt + lineage) and builds the service's Bento, which
    records and keeps what `feedback` says.

    The Bento tag is recorded on the ZenML model version and the MLflow version.
    """
    name = lineage["model_name"]
    model_tag = save_model(name, onnx.path, weights.path, lineage)
    bento = build(model_tag, lineage, feedback.model_dump())
    configure_tracking()
    MlflowClient().set_model_version_tag(
        name, lineage["mlflow_version"], "bento_tag", str(bento.tag)
    )
    log_metadata(
        {"bento_tag": str(bento.tag), "bento_model_tag": model_tag, **lineage},
        infer_model=True,
    )
    return bento
