"""Step: decide, register the challenger in MLflow, and promote it if it is better."""

from typing import Annotated

import mlflow
from zenml import get_step_context, log_metadata, step
from zenml.types import MarkdownString

from steps.training.evaluate_champion import ChampionEvaluation
from visionops.config import PromotionSettings
from visionops.mlflow_model import log_pyfunc_model
from visionops.names import DECISION_REPORT, PROMOTION_DECISION
from visionops.training.candidates import CandidateResult, ModelFile
from visionops.training.evaluate import EvalReport
from visionops.training.promotion import Decision, decide, decision_markdown
from visionops.training.tracking import (
    CHALLENGER,
    CHAMPION,
    configure_tracking,
    register_version,
    set_alias,
)

PRODUCTION = "production"


# Never cached: it reads and writes the registry.
@step(enable_cache=False)
def promote_model(
    selected: CandidateResult,
    challenger: EvalReport,
    champion: ChampionEvaluation,
    onnx: ModelFile,
    rule: PromotionSettings,
    model_name: str,
) -> tuple[
    Annotated[Decision, PROMOTION_DECISION],
    Annotated[MarkdownString, DECISION_REPORT],
]:
    """Registers the challenger (alias `challenger`); promotes it if the rule says so.

    Promotion moves the MLflow alias `champion` and the ZenML model version's stage
    to `production`. The report is written either way.
    """
    decision = decide(challenger, champion.report, rule, champion.version)
    report = decision_markdown(decision, challenger, champion.report, model_name)
    context = get_step_context()
    zenml_model = context.model
    configure_tracking()
    with mlflow.start_run(run_id=selected.mlflow_run_id):
        info = log_pyfunc_model(
            onnx.path,
            name="model",
            metadata={
                "dataset_hash": challenger.dataset_hash,
                "test_metrics": challenger.metrics,
            },
        )
        mlflow.log_text(report, "decision.md")
        mlflow.set_tags(
            {
                "promotion.promoted": str(decision.promote).lower(),
                "promotion.reason": decision.reason,
            }
        )
    version = register_version(
        model_name,
        info.model_uri,
        tags={
            "zenml.model": zenml_model.name,
            "zenml.model_version": str(zenml_model.version),
            "zenml.pipeline_run_id": str(context.pipeline_run.id),
            "zenml.pipeline_run_name": context.pipeline_run.name,
            "dataset_hash": challenger.dataset_hash,
            "promoted": str(decision.promote).lower(),
            **{f"test_{k}": f"{v:.6f}" for k, v in challenger.metrics.items()},
            "onnx_latency_ms": f"{challenger.latency_ms:.3f}"
            if challenger.latency_ms
            else "",
            "serving_imgsz": str(challenger.latency_imgsz),
        },
    )
    set_alias(model_name, CHALLENGER, version)
    if decision.promote:
        set_alias(model_name, CHAMPION, version)
        zenml_model.set_stage(PRODUCTION, force=True)
    log_metadata(
        {
            "promotion": decision.model_dump(),
            "mlflow_model_name": model_name,
            "mlflow_model_version": version,
            "mlflow_model_uri": f"models:/{model_name}/{version}",
        },
        infer_model=True,
    )
    return decision, MarkdownString(report)
