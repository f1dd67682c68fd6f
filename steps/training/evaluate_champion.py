"""Step: re-measure the current champion on the same test split as the challenger."""

from typing import Annotated

from zenml import log_metadata, step

from visionops.app.materializers import work_dir
from visionops.config import EvaluationSettings
from visionops.core.names import CHAMPION_EVALUATION
from visionops.data.version import DatasetVersion
from visionops.training.stages import ChampionScore
from visionops.training.stages import evaluate_champion as evaluate
from visionops.training.tracking import configure_tracking


# Never cached: the champion can change between two runs with the same inputs.
@step(enable_cache=False)
def evaluate_champion(
    dataset: DatasetVersion, model_name: str, settings: EvaluationSettings
) -> Annotated[ChampionScore, CHAMPION_EVALUATION]:
    """Evaluates the `champion` alias's weights exactly as the challenger is."""
    configure_tracking()
    score = evaluate(dataset, model_name, settings, work_dir("champion"))
    if score.report is None:
        log_metadata({"champion": "none"})
    else:
        log_metadata(
            {"champion_version": score.version, "test_metrics": score.report.metrics}
        )
    return score
