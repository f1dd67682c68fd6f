"""Step: measure the selected candidate on the held-out test split."""

from typing import Annotated

from mlflow.tracking import MlflowClient
from zenml import log_metadata, step
from zenml.types import HTMLString

from visionops.config import EvaluationSettings
from visionops.data.version import DatasetVersion
from visionops.inference import export_onnx
from visionops.materializers import work_dir
from visionops.names import EVALUATION_REPORT, ONNX_MODEL, TEST_EVALUATION
from visionops.training.candidates import CandidateResult, ModelFile
from visionops.training.evaluate import (
    EvalReport,
    evaluate_weights,
    evaluation_html,
    onnx_latency_ms,
)
from visionops.training.tracking import configure_tracking, log_dir_artifacts


@step
def evaluate_model(
    weights: ModelFile,
    dataset: DatasetVersion,
    selected: CandidateResult,
    settings: EvaluationSettings,
) -> tuple[
    Annotated[EvalReport, TEST_EVALUATION],
    Annotated[ModelFile, ONNX_MODEL],
    Annotated[HTMLString, EVALUATION_REPORT],
]:
    """Test metrics, per-class AP, confusion matrix and ONNX CPU latency."""
    out = work_dir("evaluation")
    report = evaluate_weights(
        weights.path,
        dataset.data_yaml,
        dataset.hash,
        out / "test",
        imgsz=selected.train["imgsz"],
        batch=settings.batch,
        device=selected.train["device"],
    )
    serving_imgsz = settings.serving_imgsz or selected.train["imgsz"]
    onnx = export_onnx(weights.path, serving_imgsz, out_dir=out)
    test_images = sorted((dataset.root / "images" / "test").glob("*"))
    report.latency_ms = onnx_latency_ms(onnx, test_images, settings.latency_runs)
    report.latency_imgsz = serving_imgsz

    configure_tracking()
    client = MlflowClient()
    run_id = selected.mlflow_run_id
    for key, value in report.metrics.items():
        client.log_metric(run_id, f"test_{key}", value)
    client.log_metric(run_id, "test_onnx_latency_ms", report.latency_ms)
    client.log_dict(run_id, report.model_dump(), "test/evaluation.json")
    client.log_artifact(run_id, str(onnx), "onnx")
    log_dir_artifacts(run_id, out / "test", "test", ("*.png", "*.jpg"))
    log_metadata(
        {
            "test_metrics": report.metrics,
            "onnx_latency_ms": report.latency_ms,
            "serving_imgsz": serving_imgsz,
            "dataset_hash": dataset.hash,
            "mlflow_run_id": run_id,
        },
        infer_model=True,
    )
    return report, ModelFile(onnx), HTMLString(evaluation_html(report, out / "test"))
