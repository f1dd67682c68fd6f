"""Step: measure the selected candidate on the held-out test split."""

from typing import Annotated

from zenml import log_metadata, step
from zenml.types import HTMLString

from visionops.app.materializers import work_dir
from visionops.config import EvaluationSettings
from visionops.core.names import EVALUATION_REPORT, ONNX_MODEL, TEST_EVALUATION
from visionops.data.version import DatasetVersion
from visionops.engine.report import EvalReport
from visionops.training.candidates import CandidateResult, ModelFile
from visionops.training.stages import evaluate_challenger
from visionops.training.tracking import configure_tracking


@step
def evaluate_model(
    weights: ModelFile,
    dataset: DatasetVersion,
    selected: CandidateResult,
    settings: EvaluationSettings,
    metric: str | None = None,
) -> tuple[
    Annotated[EvalReport, TEST_EVALUATION],
    Annotated[ModelFile, ONNX_MODEL],
    Annotated[HTMLString, EVALUATION_REPORT],
]:
    """Test metrics (the task's), plots, and the ONNX export to serve (INT8 when
    its `metric`, the promotion metric, holds within the allowed drop)."""
    configure_tracking()
    result = evaluate_challenger(
        weights.path, dataset, selected, settings, work_dir("evaluation"), metric
    )
    report = result.report
    log_metadata(
        {
            "test_metrics": report.metrics,
            "onnx_latency_ms": report.latency_ms,
            "serving_imgsz": report.latency_imgsz,
            "dataset_hash": dataset.hash,
            "task": report.task,
            "mlflow_run_id": selected.mlflow_run_id,
            "precision": report.quantization.precision
            if report.quantization
            else "fp32",
            "quantization": report.quantization.model_dump()
            if report.quantization
            else {},
        },
        infer_model=True,
    )
    return report, ModelFile(result.onnx), HTMLString(result.html)
