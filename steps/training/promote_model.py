"""Step: decide, register the challenger in MLflow, and promote it if it is better."""

import tempfile
from pathlib import Path
from typing import Annotated

from zenml import get_step_context, log_metadata, step
from zenml.types import MarkdownString

from visionops.config import EvaluationSettings, PromotionSettings
from visionops.core.names import DECISION_REPORT, PROMOTION_DECISION
from visionops.data.version import DatasetVersion
from visionops.engine.report import EvalReport
from visionops.training.candidates import CandidateResult, ModelFile
from visionops.training.promotion import Decision
from visionops.training.stages import (
    ChampionScore,
    evaluate_champion,
    promote_challenger,
)
from visionops.training.tracking import configure_tracking

PRODUCTION = "production"


# Never cached: it reads and writes the registry.
@step(enable_cache=False)
def promote_model(
    selected: CandidateResult,
    challenger: EvalReport,
    champion: ChampionScore,
    onnx: ModelFile,
    rule: PromotionSettings,
    model_name: str,
    dataset: DatasetVersion,
    evaluation: EvaluationSettings,
) -> tuple[
    Annotated[Decision, PROMOTION_DECISION],
    Annotated[MarkdownString, DECISION_REPORT],
]:
    """Registers the challenger (alias `challenger`); promotes it if the rule says so.

    Promotion moves the MLflow alias `champion` and the ZenML model version's stage
    to `production`. The report is written either way; `evaluation.bootstrap`
    sets the paired bootstrap of challenger minus champion. When another
    training moved the champion meanwhile, the new champion is measured on
    `dataset`'s test split as `evaluate_champion` measured the old one, and the
    challenger compared with it again.
    """
    context = get_step_context()
    zenml_model = context.model
    configure_tracking()
    result = promote_challenger(
        selected,
        challenger,
        champion,
        onnx.path,
        rule,
        model_name,
        lineage_tags={
            "zenml.model": zenml_model.name,
            "zenml.model_version": str(zenml_model.version),
            "zenml.pipeline_run_id": str(context.pipeline_run.id),
            "zenml.pipeline_run_name": context.pipeline_run.name,
        },
        bootstrap=evaluation.bootstrap,
        rescore=lambda: _measure_champion(dataset, model_name, evaluation),
    )
    if result.decision.promote:
        zenml_model.set_stage(PRODUCTION, force=True)
    log_metadata(
        {
            "promotion": result.decision.model_dump(),
            "mlflow_model_name": model_name,
            "mlflow_model_version": result.version,
            "mlflow_model_uri": f"models:/{model_name}/{result.version}",
            "task": challenger.task,
        },
        infer_model=True,
    )
    return result.decision, MarkdownString(result.report)


def _measure_champion(
    dataset: DatasetVersion, model_name: str, evaluation: EvaluationSettings
) -> ChampionScore:
    """The champion of now on the test split, in a folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="champion-again-") as tmp:
        return evaluate_champion(dataset, model_name, evaluation, Path(tmp))
