"""Step: re-measure the current champion on the same test split as the challenger."""

from typing import Annotated

from pydantic import BaseModel
from zenml import log_metadata, step

from visionops.config import EvaluationSettings
from visionops.data.version import DatasetVersion
from visionops.materializers import work_dir
from visionops.names import CHAMPION_EVALUATION
from visionops.training.evaluate import EvalReport, evaluate_weights, onnx_latency_ms
from visionops.training.tracking import champion, configure_tracking, download_run_file


class ChampionEvaluation(BaseModel):
    """The champion's scores on today's test split, or no champion at all."""

    version: str | None = None
    run_id: str | None = None
    report: EvalReport | None = None


# Never cached: the champion can change between two runs with the same inputs.
@step(enable_cache=False)
def evaluate_champion(
    dataset: DatasetVersion, model_name: str, settings: EvaluationSettings
) -> Annotated[ChampionEvaluation, CHAMPION_EVALUATION]:
    """Evaluates the `champion` alias's weights exactly as the challenger is."""
    configure_tracking()
    version = champion(model_name)
    if version is None:
        log_metadata({"champion": "none"})
        return ChampionEvaluation()
    import mlflow

    params = mlflow.get_run(version.run_id).data.params
    out = work_dir("champion")
    weights = download_run_file(version.run_id, "weights/best.pt", out / "weights")
    report = evaluate_weights(
        weights,
        dataset.data_yaml,
        dataset.hash,
        out / "test",
        imgsz=int(params["imgsz"]),
        batch=settings.batch,
        device=params.get("device", "auto"),
    )
    onnx_files = [
        f.path for f in mlflow.MlflowClient().list_artifacts(version.run_id, "onnx")
    ]
    if onnx_files:
        onnx = download_run_file(version.run_id, onnx_files[0], out / "onnx")
        test_images = sorted((dataset.root / "images" / "test").glob("*"))
        report.latency_ms = onnx_latency_ms(onnx, test_images, settings.latency_runs)
    log_metadata({"champion_version": version.version, "test_metrics": report.metrics})
    return ChampionEvaluation(
        version=str(version.version), run_id=version.run_id, report=report
    )
