"""Deployment pipeline: champion -> ONNX -> BentoML model and Bento -> serve."""

from zenml import pipeline

from steps.deployment import build_bento, export_champion, serve_bento
from visionops.config import DeploymentParameters


@pipeline(name="deployment")
def deployment(params: DeploymentParameters) -> None:
    """Packages the promoted model as a BentoML service; serves it if asked."""
    weights, onnx, lineage = export_champion(params.model.name)
    bento = build_bento(weights, onnx, lineage, params.feedback)
    serve_bento(bento, params.serve, params.port)
